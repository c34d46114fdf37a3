# Scenario 12 by hand (the bench binary could not be built in time): python3 bench/retention-by-hand.py WORKER WORKDIR 16 fills a store
# with 16 MiB of filtered (finished) events; python3 bench/retention-by-hand.py WORKER WORKDIR then runs 200 events/s for 15 s on
# two copies of it, without a limit and with retention.maxBytes at 2/3 of the file, and prints latency (planned send -> 202, ms) and file sizes.
import os, sys, time, json, shutil, subprocess, threading, http.client, socket
BIN=sys.argv[1]; WORK=sys.argv[2]; FILL=sys.argv[3] if len(sys.argv)>3 else None
def free():
    s=socket.socket(); s.bind(('127.0.0.1',0)); p=s.getsockname()[1]; s.close(); return p
BR='''apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {name: ret}
spec:
  filter: "payload.seq < 0"
  destinations:
  - {name: d, url: "http://127.0.0.1:9/x"}
'''
def start(data, limit):
    man=os.path.join(WORK,'m'); shutil.rmtree(man,ignore_errors=True); os.makedirs(man)
    y=BR
    if limit: y='apiVersion: causeway.dev/v1alpha1\nkind: WorkerPool\nmetadata: {name: local}\nspec:\n  retention: {maxAge: 7d, maxBytes: "%d"}\n---\n'%limit + y
    open(os.path.join(man,'b.yaml'),'w').write(y)
    lp,ap=free(),free()
    log=open(os.path.join(WORK,'w%d.log'%lp),'w')
    p=subprocess.Popen([BIN,'up','-f',man,'--data-dir',data,'--listen','127.0.0.1:%d'%lp,'--admin','127.0.0.1:%d'%ap,'--retention-interval','5s'],stdout=log,stderr=log,env=dict(os.environ,CAUSEWAY_LOG='info',NO_COLOR='1'))
    for _ in range(600):
        try:
            c=http.client.HTTPConnection('127.0.0.1',ap,timeout=1); c.request('GET','/readyz')
            if c.getresponse().status==200: break
        except Exception: pass
        time.sleep(0.05)
    return p,lp,log.name
body=lambda i: json.dumps({"seq":i,"pad":"x"*1000})
def load(port, rate, secs, nthreads=8):
    lat=[]; errs=[0]; t0=time.perf_counter()+0.05; total=int(rate*secs)
    def worker(k):
        c=http.client.HTTPConnection('127.0.0.1',port,timeout=15)
        for i in range(k,total,nthreads):
            planned=t0+i/rate
            d=planned-time.perf_counter()
            if d>0: time.sleep(d)
            try:
                c.request('POST','/hooks/default/ret',body(i),{'content-type':'application/json'})
                r=c.getresponse(); r.read()
                if r.status!=202: errs[0]+=1
            except Exception:
                errs[0]+=1; c=http.client.HTTPConnection('127.0.0.1',port,timeout=15)
            lat.append((time.perf_counter()-planned)*1e3)
    ts=[threading.Thread(target=worker,args=(k,)) for k in range(nthreads)]
    [t.start() for t in ts]; [t.join() for t in ts]
    lat.sort(); n=len(lat)
    return dict(n=n,max=lat[-1],p999=lat[min(n-1,int(n*.999))],p99=lat[int(n*.99)],p50=lat[n//2],errs=errs[0])
fb=lambda d: os.path.getsize(os.path.join(d,'store','events.redb'))
if FILL:
    d=os.path.join(WORK,'fill'); shutil.rmtree(d,ignore_errors=True)
    p,port,_=start(d,None)
    while fb(d) < int(FILL)<<20:
        load(port, 1500, 3, 16)
    p.terminate(); p.wait(); print('filled', fb(d)>>20, 'MiB'); sys.exit(0)
for side in ['base','ret']:
    d=os.path.join(WORK,side); shutil.rmtree(d,ignore_errors=True); shutil.copytree(os.path.join(WORK,'fill'),d)
    before=fb(d)
    p,port,log=start(d, before*2//3 if side=='ret' else None)
    r=load(port, 200, 15)
    after=fb(d); time.sleep(7); quiet=fb(d)
    p.terminate(); p.wait()
    lg=open(log).read()
    comp=[l.split('store: compacted')[0][-60:] for l in lg.splitlines() if 'store: compacted' in l]
    ret=[l[l.find('retention'):][:160] for l in lg.splitlines() if ' retention ' in l or 'retention by_' in l]
    print(side, json.dumps({k:round(v,1) if isinstance(v,float) else v for k,v in r.items()}), 'file MiB %.1f -> %.1f -> %.1f'%(before/2**20,after/2**20,quiet/2**20), 'compactions', sum('compacted=true' in l for l in ret), ret[:2])
