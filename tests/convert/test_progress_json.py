"""convert --progress=json (an instar extension, docs/convert.md): one JSON object per line on
stderr with phase, percent, done and total; done never decreases, the last line is 100% with done
equal to total; stdout stays empty; -q silences it; -p (qemu's display) still goes to stdout.

usage: test_progress_json.py INSTAR"""
import json
import os
import subprocess
import sys
import tempfile


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    instar = sys.argv[1]
    failures = []
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, 'src.raw')
        with open(src, 'wb') as f:
            for i in range(16):  # 16 MiB: data and zero runs
                f.write((bytes([i + 1]) * (1 << 20)) if i % 2 == 0 else bytes(1 << 20))
        out = os.path.join(d, 'out.qcow2')
        p = subprocess.run([instar, 'convert', '--progress=json', '-f', 'raw', '-O', 'qcow2', src, out],
                           capture_output=True, text=True)
        if p.returncode != 0 or p.stdout:
            failures.append(f'convert --progress=json: rc {p.returncode}, stdout {p.stdout!r}, stderr {p.stderr!r}')
        else:
            lines = [json.loads(x) for x in p.stderr.splitlines()]
            done = [x['done'] for x in lines]
            if not lines or any(set(x) != {'phase', 'percent', 'done', 'total'} for x in lines):
                failures.append(f'fields: {lines[:3]}')
            elif any(x['phase'] != 'convert' for x in lines) or done != sorted(done):
                failures.append(f'phase or order: {lines}')
            elif lines[-1]['percent'] != 100 or lines[-1]['done'] != lines[-1]['total'] or lines[-1]['total'] == 0:
                failures.append(f'last line: {lines[-1]}')
        q = subprocess.run([instar, 'convert', '-q', '--progress=json', '-f', 'raw', '-O', 'qcow2', src, out],
                           capture_output=True, text=True)
        if q.returncode != 0 or q.stdout or q.stderr:
            failures.append(f'-q --progress=json: rc {q.returncode}, {q.stdout!r}, {q.stderr!r}')
        r = subprocess.run([instar, 'convert', '-p', '-f', 'raw', '-O', 'qcow2', src, out], capture_output=True,
                           text=True)
        if r.returncode != 0 or '(100.00/100%)' not in r.stdout or r.stderr:
            failures.append(f'-p: rc {r.returncode}, {r.stdout!r}, {r.stderr!r}')
    for f in failures:
        print('FAIL ' + f)
    print(f'{3 - len(failures)} passed, {len(failures)} failed')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
