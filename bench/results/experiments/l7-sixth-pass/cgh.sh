#!/bin/bash
name=$1; n=$2; url=$3; shift 3
valgrind --tool=callgrind --callgrind-out-file=/tmp/cgl7/cg-$name-$n.out haproxy -db -f /tmp/cgl7/haproxy.cfg > /tmp/cgl7/$name-$n.log 2>&1 &
pid=$!
for i in $(seq 1 100); do curl -s -o /dev/null http://127.0.0.1:18000/index.html && break; sleep 0.3; done
h2load "$@" -n $n -c 10 $url 2>&1 | grep -E "^requests:"
kill -INT $pid; sleep 2; kill $pid 2>/dev/null; wait $pid
grep -E "Collected" /tmp/cgl7/$name-$n.log
