"""luks and --object secret against both qemu-img oracles: info (human and json) of LUKS images qemu-img
made (cipher modes and hashes qemu supports), convert with the passphrase (--image-opts and json:
names) compared byte for byte with qemu-img's own decryption, and the refusals (no secret, a wrong
passphrase, an unknown secret id, bad --object definitions), messages and exit codes.

usage: luks_differential.py INSTAR"""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'formats'))
from differential_support import QEMUS, report, start  # noqa: E402
from oracle_retry import run_fixture  # noqa: E402

PASS = 'instar-test-passphrase'
# (name, create options): qemu's default (aes-256-xts-plain64, sha256) and the other modes qemu makes.
VARIANTS = [
    ('default', ''),
    ('cbc-essiv', ',cipher-alg=aes-128,cipher-mode=cbc,ivgen-alg=essiv,ivgen-hash-alg=sha256'),
    ('cbc-plain', ',cipher-alg=aes-256,cipher-mode=cbc,ivgen-alg=plain,hash-alg=sha1'),
    ('xts128-sha512', ',cipher-alg=aes-128,cipher-mode=xts,ivgen-alg=plain64,hash-alg=sha512'),
]
SIZE = 3 * 1024 * 1024 + 512


def norm(text, d, exe):
    return text.replace(d + '/', '').replace(exe, 'PROG').replace(QEMUS['7.2'][0], 'PROG').replace(
        QEMUS['10.0'][0], 'PROG').replace('qemu-img:', 'PROG:').replace('instar:', 'PROG:')


def main():
    args, status = start(__doc__, 1)
    if args is None:
        return status
    instar = args[0]
    results = []
    with tempfile.TemporaryDirectory() as d:
        qemu72, qemu_io = QEMUS['7.2']
        secret = f'secret,id=sec0,data={PASS}'
        for name, opts in VARIANTS:
            img = os.path.join(d, f'{name}.luks')
            run_fixture([qemu72, 'create', '-q', '--object', secret, '-f', 'luks', '-o',
                         'key-secret=sec0,iter-time=10' + opts, img, str(SIZE)], check=True)
            # Some data: patterns at the start, across a sector boundary, at the end.
            io_opts = f'driver=luks,key-secret=sec0,file.filename={img}'
            for cmd in ('write -P 0x5a 0 65536', 'write -P 0xc3 1000000 70000', f'write -P 0x11 {SIZE - 4096} 4096'):
                run_fixture([qemu_io, '--object', secret, '--image-opts', io_opts, '-c', cmd], check=True)
            for ver, (qemu_img, _) in QEMUS.items():
                env = dict(os.environ, INSTAR_QEMU_VERSION=ver)
                for out in ('human', 'json'):
                    q = subprocess.run([qemu_img, 'info', f'--output={out}', img], capture_output=True, text=True)
                    o = subprocess.run([instar, 'info', f'--output={out}', img], capture_output=True, text=True,
                                       env=env)
                    qt, ot = q.stdout, o.stdout
                    if out == 'json':
                        qj, oj = json.loads(qt), json.loads(ot) if o.returncode == 0 else None
                        for j in (qj, oj):
                            if j:
                                j.pop('actual-size', None)
                                j.get('children', [{}])
                        qt, ot = json.dumps(qj, sort_keys=True), json.dumps(oj, sort_keys=True)
                    else:
                        qt = '\n'.join(x for x in qt.splitlines() if not x.startswith('disk size'))
                        ot = '\n'.join(x for x in ot.splitlines() if not x.startswith('disk size'))
                    probs = [] if (qt == ot and q.returncode == o.returncode) else [f'\nqemu:\n{qt}\nours:\n{ot}\n{o.stderr}']
                    results.append((f'info {out} {name} [qemu {ver}]', probs))
            # Data: qemu-img's decryption is the reference.
            ref = os.path.join(d, f'{name}.ref')
            run_fixture([qemu72, 'convert', '--object', secret, '--image-opts', io_opts, '-O', 'raw', ref],
                        check=True)
            for label, args in (('image-opts', ['--image-opts', io_opts]),
                                ('json', ['json:' + json.dumps({'driver': 'luks', 'key-secret': 'sec0',
                                                                'file': {'filename': img}})])):
                mine = os.path.join(d, f'{name}.{label}.raw')
                o = subprocess.run([instar, 'convert', '--object', secret] + args + ['-O', 'raw', mine],
                                   capture_output=True, text=True)
                if o.returncode == 0 and label == 'json':
                    # The same through the process sandbox (its own runtime build).
                    o = subprocess.run([instar, '--sandbox', 'process', 'convert', '--object', secret] + args +
                                       ['-O', 'raw', mine + '.p'], capture_output=True, text=True)
                    if o.returncode == 0 and open(mine + '.p', 'rb').read() != open(ref, 'rb').read():
                        o.returncode, o.stderr = 99, 'process sandbox: data differs'
                probs = []
                if o.returncode != 0:
                    probs.append(f'exit {o.returncode}: {o.stderr.strip()}')
                elif open(mine, 'rb').read() != open(ref, 'rb').read():
                    probs.append('data differs from qemu-img convert')
                results.append((f'convert {label} {name}', probs))
            # compare: the decrypted disk against qemu-img's decryption, and against a changed copy.
            changed = os.path.join(d, f'{name}.changed')
            data = bytearray(open(ref, 'rb').read())
            data[1000003] ^= 1
            open(changed, 'wb').write(bytes(data))
            js = 'json:' + json.dumps({'driver': 'luks', 'key-secret': 'sec0', 'file': {'filename': img}})
            for other in (ref, changed):
                for ver, (qemu_img, _) in QEMUS.items():
                    args = ['compare', '--object', secret, js, '-F', 'raw', other]
                    q = subprocess.run([qemu_img] + args, capture_output=True, text=True)
                    o = subprocess.run([instar] + args, capture_output=True, text=True,
                                       env=dict(os.environ, INSTAR_QEMU_VERSION=ver))
                    same = (q.returncode, q.stdout, q.stderr) == (o.returncode, o.stdout, o.stderr)
                    results.append((f'compare {name} {os.path.basename(other)} [qemu {ver}]', [] if same else [
                        f'qemu {q.returncode} {q.stdout!r} {q.stderr!r} ours {o.returncode} {o.stdout!r} {o.stderr!r}']))

        # Refusals: same message and exit status as both binaries.
        img = os.path.join(d, 'default.luks')
        io_opts = f'driver=luks,key-secret=sec0,file.filename={img}'
        cases = [
            ('no secret', ['convert', '-O', 'raw', img]),
            ('wrong passphrase', ['convert', '--object', 'secret,id=sec0,data=wrong', '--image-opts', io_opts]),
            ('unknown id', ['convert', '--object', 'secret,id=sec1,data=x', '--image-opts', io_opts]),
            ('no data', ['convert', '--object', 'secret,id=sec0', '--image-opts', io_opts]),
            ('data and file', ['convert', '--object', 'secret,id=sec0,data=a,file=/dev/null', '--image-opts', io_opts]),
            ('no id', ['convert', '--object', 'secret,data=a', '--image-opts', io_opts]),
            ('bad type', ['convert', '--object', 'foo,id=a', '--image-opts', io_opts]),
            ('bad format', ['convert', '--object', 'secret,id=sec0,data=a,format=hex', '--image-opts', io_opts]),
            ('duplicate', ['convert', '--object', 'secret,id=sec0,data=a', '--object', 'secret,id=sec0,data=b',
                           '--image-opts', io_opts]),
        ]
        for label, args in cases:
            out = os.path.join(d, 'refused.raw')
            for ver, (qemu_img, _) in QEMUS.items():
                q = subprocess.run([qemu_img] + args + [out], capture_output=True, text=True)
                o = subprocess.run([instar] + args + [out], capture_output=True, text=True,
                                   env=dict(os.environ, INSTAR_QEMU_VERSION=ver))
                qe, oe = norm(q.stderr.strip(), d, instar), norm(o.stderr.strip(), d, instar)
                probs = [] if (q.returncode, qe) == (o.returncode, oe) else [
                    f'qemu {q.returncode} {qe!r} ours {o.returncode} {oe!r}']
                results.append((f'refusal {label} [qemu {ver}]', probs))
        # The passphrase from a file, base64-encoded data.
        pf = os.path.join(d, 'pass')
        with open(pf, 'w') as f:
            f.write(PASS)
        ref = os.path.join(d, 'default.ref')
        import base64
        for label, obj in (('file', f'secret,id=sec0,file={pf}'),
                           ('base64', 'secret,id=sec0,format=base64,data=' + base64.b64encode(PASS.encode()).decode())):
            mine = os.path.join(d, f'secret-{label}.raw')
            o = subprocess.run([instar, 'convert', '--object', obj, '--image-opts', io_opts, '-O', 'raw', mine],
                               capture_output=True, text=True)
            ok = o.returncode == 0 and open(mine, 'rb').read() == open(ref, 'rb').read()
            results.append((f'secret {label}', [] if ok else [f'exit {o.returncode}: {o.stderr.strip()}']))
    return report(results)


if __name__ == '__main__':
    sys.exit(main())
