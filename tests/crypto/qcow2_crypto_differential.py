"""Encrypted qcow2 (encrypt.format=luks and legacy aes) read through --object secret, against both
qemu-img oracles: convert with --image-opts and json: names compared byte for byte with qemu-img's
own decryption, and the refusals (no secret, wrong passphrase).

usage: qcow2_crypto_differential.py INSTAR"""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'formats'))
from differential_support import QEMUS, report, start  # noqa: E402
from oracle_retry import run_fixture  # noqa: E402

PASS = 'qcow2-passphrase'
VARIANTS = [
    ('luks', 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10'),
    ('luks-cbc-essiv', 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10,encrypt.cipher-alg=aes-256,'
                       'encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=sha256'),
    ('luks-4k', 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10,cluster_size=4096'),
    ('aes', 'encrypt.format=aes,encrypt.key-secret=sec0'),
]
SIZE = 5 * 1024 * 1024


def norm(text, d):
    for p in (QEMUS['7.2'][0], QEMUS['10.0'][0]):
        text = text.replace(p, 'PROG')
    return text.replace(d + '/', '').replace('qemu-img:', 'PROG:').replace('instar:', 'PROG:')


def main():
    args, status = start(__doc__, 1)
    if args is None:
        return status
    instar = args[0]
    results = []
    secret = f'secret,id=sec0,data={PASS}'
    with tempfile.TemporaryDirectory() as d:
        qemu72, qemu_io = QEMUS['7.2']
        for name, opts in VARIANTS:
            img = os.path.join(d, f'{name}.qcow2')
            run_fixture([qemu72, 'create', '-q', '--object', secret, '-f', 'qcow2', '-o', opts, img, str(SIZE)],
                        check=True)
            io_opts = f'driver=qcow2,encrypt.key-secret=sec0,file.filename={img}'
            for cmd in ('write -P 0x5a 0 65536', 'write -P 0xc3 1000000 300000', 'write -z 2000000 70000',
                        f'write -P 0x11 {SIZE - 4096} 4096'):
                run_fixture([qemu_io, '--object', secret, '--image-opts', io_opts, '-c', cmd], check=True)
            ref = os.path.join(d, f'{name}.ref')
            run_fixture([qemu72, 'convert', '--object', secret, '--image-opts', io_opts, '-O', 'raw', ref],
                        check=True)
            for label, args in (('image-opts', ['--image-opts', io_opts]),
                                ('json', ['json:' + json.dumps({'driver': 'qcow2', 'encrypt.key-secret': 'sec0',
                                                                'file': {'filename': img}})])):
                mine = os.path.join(d, f'{name}.{label}.raw')
                o = subprocess.run([instar, 'convert', '--object', secret] + args + ['-O', 'raw', mine],
                                   capture_output=True, text=True)
                probs = []
                if o.returncode != 0:
                    probs.append(f'exit {o.returncode}: {o.stderr.strip()}')
                elif open(mine, 'rb').read() != open(ref, 'rb').read():
                    probs.append('data differs from qemu-img convert')
                results.append((f'convert {label} {name}', probs))
            out = os.path.join(d, 'refused.raw')
            for label, args in (('no secret', ['convert', '-O', 'raw', img]),
                                ('wrong passphrase', ['convert', '--object', 'secret,id=sec0,data=wrong',
                                                      '--image-opts', io_opts, '-O', 'raw'])):
                if name == 'aes' and label == 'wrong passphrase':
                    continue  # legacy aes has no key check: qemu reads garbage, as instar does
                for ver, (qemu_img, _) in QEMUS.items():
                    q = subprocess.run([qemu_img] + args + [out], capture_output=True, text=True)
                    o = subprocess.run([instar] + args + [out], capture_output=True, text=True,
                                       env=dict(os.environ, INSTAR_QEMU_VERSION=ver))
                    qe, oe = norm(q.stderr.strip(), d), norm(o.stderr.strip(), d)
                    probs = [] if (q.returncode, qe) == (o.returncode, oe) else [
                        f'qemu {q.returncode} {qe!r} ours {o.returncode} {oe!r}']
                    results.append((f'refusal {label} {name} [qemu {ver}]', probs))
    return report(results)


if __name__ == '__main__':
    sys.exit(main())
