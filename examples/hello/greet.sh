#!/bin/sh
echo "$GREETING"
echo "I am $(hostname), PID $$, in $(pwd); $(cat built.txt)."
