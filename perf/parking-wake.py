#!/usr/bin/env python3
"""What waking a parked connection costs, in user-space instructions (callgrind).

    perf/parking-wake.py [BINARY] [CONNECTIONS]   # defaults: target/release/greeting-service 500

An idle plain HTTP/1 connection parks after one second (README, Protocols): hyper's
state is dropped and the bare socket waits; its next request builds a fresh hyper
connection. Under callgrind, CONNECTIONS keep-alive connections each send one
request; after 3 s (all parked) each sends another ("woken"), then at once another
("busy": none had time to park); the counters are zeroed before and dumped after
each round with callgrind_control. The wake cost is (woken - busy) / CONNECTIONS,
measured twice. Requests are raw HTTP/1.1 with three header fields. Needs valgrind
and harness/ (`scripts/py perf/parking-wake.py` installs the latter).
"""
import glob, os, re, socket, subprocess, sys, tempfile, time

from greeting_harness import Service

binary = sys.argv[1] if len(sys.argv) > 1 else 'target/release/greeting-service'
N = int(sys.argv[2]) if len(sys.argv) > 2 else 500
out = os.path.join(tempfile.mkdtemp(), 'callgrind.out')
for f in glob.glob(out+'*'): os.remove(f)
# callgrind_control finds the process by a pipe named after $HOST, which the server
# reads too: both get the same one.
env=dict(os.environ, HOST='127.0.0.1')
p=Service(['valgrind','--tool=callgrind',f'--callgrind-out-file={out}',binary],host=env['HOST'])
port=p.port
REQ=b'POST /greet HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{"name":"John"}'
def rt(s):
    s.sendall(REQ); buf=b''
    while not buf.endswith(b'{"message":"Hello, John!"}'): buf+=s.recv(4096)
poke=socket.create_connection(('127.0.0.1',port))
def control(arg):
    c=subprocess.Popen(['callgrind_control',arg,str(p.pid)],env=env,stdout=subprocess.PIPE,stderr=subprocess.STDOUT,text=True)
    while c.poll() is None:
        rt(poke); time.sleep(0.05)   # the tool acts on commands only while the program runs
    assert 'OK' in c.stdout.read()
conns=[socket.create_connection(('127.0.0.1',port)) for _ in range(N)]
for s in conns: rt(s)
def phase(name):
    control('--zero')
    for s in conns: rt(s)
    control('--dump='+name)
time.sleep(3)

phase('woken')
phase('busy')   # at once: none had time to park
time.sleep(3)
phase('woken2')
phase('busy2')
p.stop()
tot={}
for f in sorted(glob.glob(out+'.*')):
    txt=open(f).read()
    m=re.search(r'^desc: Trigger: .*?(woken2|busy2|woken|busy)\b',txt,re.M)
    s=re.search(r'^summary: (\d+)',txt,re.M) or re.search(r'^totals: (\d+)',txt,re.M)
    if m and s: tot[m.group(1)]=int(s.group(1))
print({k:round(v/N) for k,v in tot.items()})
print('wake cost per request: %.0f, %.0f' % ((tot['woken']-tot['busy'])/N, (tot['woken2']-tot['busy2'])/N))
