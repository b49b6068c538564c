#!/bin/bash
# cg.sh NAME N CMD... : callgrind the L7 pool (CMD /tmp/cgl7/l7.yaml) over N keep-alive
# requests from h2load, 10 connections: HTTP/1.1 (--h1, one at a time), or h2c with 5
# streams a connection when H2=1. Prints h2load's count and callgrind's instruction total.
name=$1; n=$2; shift 2
if [ -n "${H2:-}" ]; then proto=(-m 5); else proto=(--h1 -m 1); fi
valgrind --tool=callgrind --callgrind-out-file=/tmp/cgl7/cg-$name-$n.out "$@" /tmp/cgl7/l7.yaml > /tmp/cgl7/$name-$n.log 2>&1 &
pid=$!
for i in $(seq 1 100); do curl -s -o /dev/null http://127.0.0.1:18000/index.html && break; sleep 0.3; done
h2load "${proto[@]}" -n "$n" -c 10 http://127.0.0.1:18000/index.html 2>&1 | grep -E "^requests:"
kill -INT $pid; wait $pid
grep -E "Collected" /tmp/cgl7/$name-$n.log
