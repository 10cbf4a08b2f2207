"""Writing encrypted qcow2 against both qemu-img oracles (7.2 and 10.0): `create -f qcow2` and
`convert -O qcow2` with encrypt.format=luks (several ciphers, cluster sizes, v2) and the legacy aes
spellings (encrypt.format=aes, encryption=on), then `convert -n` into encrypted images qemu made.

Each image instar writes must give: the Formatting line and exit status qemu-img gives; the same
`qemu-img info` under both versions as qemu-img's own image (uuid and PBKDF iteration counts aside:
random and timed); `qemu-img check` clean; the same file size (the same layout); legacy aes images
byte-identical to qemu-img's (there is nothing random in them); `qemu-img compare` with the secret
against the plaintext source identical; data qemu-io writes through instar's image read back the
same by instar and qemu-img. The refusals (QAPI-level option errors, -c with encryption, convert -n
without the secret or with a wrong one, a crypto header extension shorter than the LUKS key
material) with qemu-img's message and exit status.

usage: qcow2_encrypt_differential.py INSTAR"""
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'tests', 'formats'))
from differential_support import QEMUS, report, start  # noqa: E402
from oracle_retry import run_fixture  # noqa: E402

PASS = 'qcow2-enc-passphrase'
SECRET = f'secret,id=sec0,data={PASS}'
LUKS = 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10'
# (name, -o options)
VARIANTS = [
    ('luks', LUKS),
    ('luks-cbc-essiv', LUKS + ',encrypt.cipher-alg=aes-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,'
                              'encrypt.ivgen-hash-alg=sha256'),
    ('luks-4k-sha512', LUKS + ',cluster_size=4096,encrypt.cipher-alg=aes-128,encrypt.hash-alg=sha512'),
    ('luks-512-v2', LUKS + ',cluster_size=512,compat=0.10'),
    ('aes', 'encrypt.format=aes,encrypt.key-secret=sec0'),
]
SIZE = 3 * 1024 * 1024 + 512 * 5


def norm(text, d, exe):
    for p in (exe, QEMUS['7.2'][0], QEMUS['10.0'][0]):
        text = text.replace(p, 'PROG')
    return text.replace(d + '/', '').replace('qemu-img:', 'PROG:').replace('instar:', 'PROG:')


def opts(img):
    return f'driver=qcow2,encrypt.key-secret=sec0,file.filename={img}'


def info_text(qemu_img, img):
    """qemu-img info without what is random or timed: uuid, iteration counts, disk size, name."""
    out = subprocess.run([qemu_img, 'info', img], capture_output=True, text=True).stdout
    out = re.sub(r'uuid: \S+', 'uuid: U', out)
    out = re.sub(r'iters: \d+', 'iters: N', out)
    return '\n'.join(x for x in out.splitlines() if not x.strip().startswith(('disk size', 'image:', 'filename:')))


def same(a, b):
    with open(a, 'rb') as x, open(b, 'rb') as y:
        return x.read() == y.read()


def qrun(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def check_image(results, label, img, qimg, src, d, instar, aes):
    """The common checks of an instar-written image against qemu-img's image of the same command
    (a created image, src None: info, check and size only)."""
    qemu72, qemu_io = QEMUS['7.2']
    for ver, (qemu_img, _) in QEMUS.items():
        qi, oi = info_text(qemu_img, qimg), info_text(qemu_img, img)
        results.append((f'{label} info [qemu {ver}]', [] if qi == oi else [f'\nqemu:\n{qi}\nours:\n{oi}']))
        if src is None and ver != '7.2':
            continue
        c = qrun([qemu_img, 'check', '--object', SECRET, '--image-opts', opts(img)])
        results.append((f'{label} check [qemu {ver}]', [] if c.returncode == 0 else [
            f'{c.returncode} {c.stdout.strip()} {c.stderr.strip()}']))
        if src is not None:
            c = qrun([qemu_img, 'compare', '--object', SECRET, '--image-opts', opts(img),
                      f'driver=raw,file.filename={src}'])
            results.append((f'{label} compare with source [qemu {ver}]', [] if c.returncode == 0 else [
                f'{c.returncode} {c.stdout.strip()} {c.stderr.strip()}']))
    qs, os_ = os.path.getsize(qimg), os.path.getsize(img)
    results.append((f'{label} file size', [] if qs == os_ else [f'qemu {qs} ours {os_}']))
    if aes:
        results.append((f'{label} bytes (aes: nothing random)', [] if same(img, qimg) else ['files differ']))
    if src is None:
        return
    # qemu-io writes through qemu's unlock of instar's image; instar and qemu-img read it back alike.
    w = run_fixture([qemu_io, '--object', SECRET, '--image-opts', opts(img), '-c', 'write -P 0x5a 4096 69632',
                     '-c', 'write -P 0xa5 1049088 512'])
    ref, mine = os.path.join(d, 'io.ref'), os.path.join(d, 'io.mine')
    for p in (ref, mine):
        if os.path.exists(p):
            os.unlink(p)
    r = qrun([qemu72, 'convert', '--object', SECRET, '--image-opts', opts(img), '-O', 'raw', ref])
    m = qrun([instar, 'convert', '--object', SECRET, '--image-opts', opts(img), '-O', 'raw', mine])
    probs = []
    if w.returncode != 0 or r.returncode != 0:
        probs.append(f'qemu cannot use it: {w.stderr.strip()} {r.stderr.strip()}')
    elif m.returncode != 0:
        probs.append(f'exit {m.returncode}: {m.stderr.strip()}')
    elif not same(ref, mine):
        probs.append('decrypted data differs')
    results.append((f'{label} qemu-io write, read back', probs))


def main():
    args, status = start(__doc__, 1)
    if args is None:
        return status
    instar = os.path.abspath(args[0])
    results = []
    qemu72 = QEMUS['7.2'][0]
    with tempfile.TemporaryDirectory() as d:
        # A plaintext source: data, zeros, a hole, data again; and a second one for convert -n.
        src = os.path.join(d, 'src.raw')
        with open(src, 'wb') as f:
            f.write(os.urandom(300000))
            f.write(bytes(200000))
            f.seek(2 * 1024 * 1024 + 4096)
            f.write(os.urandom(100000))
            f.truncate(SIZE)
        src2 = os.path.join(d, 'src2.raw')
        with open(src2, 'wb') as f:
            f.write(os.urandom(SIZE))

        for name, o in VARIANTS:
            aes = 'aes' in name
            qd, od = os.path.join(d, 'q-' + name), os.path.join(d, 'o-' + name)
            os.mkdir(qd)
            os.mkdir(od)
            # create: the Formatting line and status as qemu-img's.
            q = run_fixture([qemu72, 'create', '--object', SECRET, '-f', 'qcow2', '-o', o, 'x.qcow2', str(SIZE)], cwd=qd)
            m = qrun([instar, 'create', '--object', SECRET, '-f', 'qcow2', '-o', o, 'x.qcow2', str(SIZE)], cwd=od)
            probs = [] if (q.returncode, q.stdout, norm(q.stderr, d, instar)) == (
                m.returncode, m.stdout, norm(m.stderr, d, instar)) else [
                f'qemu {q.returncode} {q.stdout!r} {q.stderr!r} ours {m.returncode} {m.stdout!r} {m.stderr!r}']
            results.append((f'create {name}', probs))
            if m.returncode == 0 and q.returncode == 0:
                check_image(results, f'create {name}', os.path.join(od, 'x.qcow2'), os.path.join(qd, 'x.qcow2'), None,
                            d, instar, aes)

            # convert -O qcow2 from the plaintext source.
            qc, oc = os.path.join(qd, 'c.qcow2'), os.path.join(od, 'c.qcow2')
            q = run_fixture([qemu72, 'convert', '--object', SECRET, '-f', 'raw', '-O', 'qcow2', '-o', o, src, qc])
            m = qrun([instar, 'convert', '--object', SECRET, '-f', 'raw', '-O', 'qcow2', '-o', o, src, oc])
            probs = [] if (q.returncode, m.returncode) == (0, 0) else [
                f'qemu {q.returncode} {q.stderr.strip()} ours {m.returncode} {m.stderr.strip()}']
            results.append((f'convert -O qcow2 {name}', probs))
            if not probs:
                check_image(results, f'convert {name}', oc, qc, src, d, instar, aes)

            # convert -n into the image qemu-img made (the qemu-io pattern overwritten by src2).
            n = qrun([instar, 'convert', '-n', '--object', SECRET, '-f', 'raw', src2, '--target-image-opts', opts(qc)])
            probs = [] if n.returncode == 0 else [f'exit {n.returncode}: {n.stderr.strip()}']
            if not probs:
                for ver, (qemu_img, _) in QEMUS.items():
                    c = qrun([qemu_img, 'compare', '--object', SECRET, '--image-opts', opts(qc),
                              f'driver=raw,file.filename={src2}'])
                    if c.returncode != 0:
                        probs.append(f'qemu {ver} compare {c.returncode} {c.stdout.strip()} {c.stderr.strip()}')
                    c = qrun([qemu_img, 'check', '--object', SECRET, '--image-opts', opts(qc)])
                    if c.returncode != 0:
                        probs.append(f'qemu {ver} check {c.returncode} {c.stdout.strip()}')
            results.append((f'convert -n {name}', probs))

        # The same through the process sandbox (its own runtime build): convert -O, verified by qemu.
        out = os.path.join(d, 'process.qcow2')
        c = qrun([instar, '--sandbox', 'process', 'convert', '--object', SECRET, '-f', 'raw', '-O', 'qcow2', '-o',
                  LUKS, src, out])
        probs = [] if c.returncode == 0 else [f'exit {c.returncode}: {c.stderr.strip()}']
        if not probs:
            q = qrun([qemu72, 'compare', '--object', SECRET, '--image-opts', opts(out), f'driver=raw,file.filename={src}'])
            if q.returncode != 0:
                probs.append(f'qemu compare {q.returncode} {q.stdout.strip()} {q.stderr.strip()}')
        results.append(('convert -O qcow2 luks (process sandbox)', probs))

        # Legacy aes has nothing random: with other options (preallocation, extended L2, refcount
        # widths, a backing file) instar's images must be qemu-img's bytes, created and converted.
        base = os.path.join(d, 'base.qcow2')
        run_fixture([qemu72, 'create', '-q', '-f', 'qcow2', base, str(SIZE)], check=True)
        aes = 'encrypt.format=aes,encrypt.key-secret=sec0'
        matrix = [
            ('metadata', ['-o', aes + ',preallocation=metadata']),
            ('falloc', ['-o', aes + ',preallocation=falloc']),
            ('extended_l2', ['-o', aes + ',extended_l2=on']),
            ('4k refcount_bits=1', ['-o', aes + ',cluster_size=4096,refcount_bits=1']),
            ('lazy_refcounts', ['-o', aes + ',lazy_refcounts=on']),
            ('backing', ['-o', aes, '-b', base, '-F', 'qcow2']),
            ('encryption=on 2M clusters', ['-o', 'encryption=on,encrypt.key-secret=sec0,cluster_size=2M']),
        ]
        for label, args in matrix:
            for cmd in ('create', 'convert'):
                if cmd == 'create':
                    tail = [f'-f', 'qcow2'] + args
                else:
                    tail = ['-f', 'raw', '-O', 'qcow2'] + [('-B' if a == '-b' else a) for a in args] + [src]
                # (one oracle per command keeps the run short: create 7.2, convert 10.0)
                ver = '7.2' if cmd == 'create' else '10.0'
                qemu_img = QEMUS[ver][0]
                qo, oo = os.path.join(d, 'aq.qcow2'), os.path.join(d, 'ao.qcow2')
                for f in (qo, oo):
                    if os.path.exists(f):
                        os.unlink(f)
                size = [str(SIZE)] if cmd == 'create' else []
                q = run_fixture([qemu_img, cmd, '-q', '--object', SECRET] + tail + [qo] + size)
                m = qrun([instar, cmd, '-q', '--object', SECRET] + tail + [oo] + size,
                         env=dict(os.environ, INSTAR_QEMU_VERSION=ver))
                probs = []
                if (q.returncode, m.returncode) != (0, 0):
                    probs.append(f'qemu {q.returncode} {q.stderr.strip()} ours {m.returncode} {m.stderr.strip()}')
                elif not same(qo, oo):
                    probs.append('files differ')
                results.append((f'aes {cmd} {label} bytes [qemu {ver}]', probs))

        # Refusals and option errors, as both binaries (create; convert -O; convert -n).
        target = os.path.join(d, 'q-luks', 'c.qcow2')
        cases = [
            ('create encryption=on without key-secret', ['create', '-f', 'qcow2', '-o', 'encryption=on', 'R', '1M']),
            ('create luks without key-secret', ['create', '-f', 'qcow2', '-o', 'encrypt.format=luks', 'R', '1M']),
            ('create unknown secret id', ['create', '--object', SECRET, '-f', 'qcow2', '-o',
                                          'encrypt.format=luks,encrypt.key-secret=nope', 'R', '1M']),
            ('create bad format', ['create', '--object', SECRET, '-f', 'qcow2', '-o',
                                   'encrypt.format=bogus,encrypt.key-secret=sec0', 'R', '1M']),
            ('create format missing', ['create', '--object', SECRET, '-f', 'qcow2', '-o', 'encrypt.key-secret=sec0',
                                       'R', '1M']),
            ('create alias clash', ['create', '--object', SECRET, '-f', 'qcow2', '-o',
                                    'encryption=on,encrypt.format=luks,encrypt.key-secret=sec0', 'R', '1M']),
            ('create encryption=off', ['create', '-f', 'qcow2', '-o', 'encryption=off', 'R', '1M']),
            ('create bad cipher-alg', ['create', '--object', SECRET, '-f', 'qcow2', '-o',
                                       LUKS + ',encrypt.cipher-alg=foo', 'R', '1M']),
            ('create bad ivgen-alg', ['create', '--object', SECRET, '-f', 'qcow2', '-o',
                                      LUKS + ',encrypt.ivgen-alg=foo', 'R', '1M']),
            ('create aes with a luks key', ['create', '--object', SECRET, '-f', 'qcow2', '-o',
                                            'encrypt.format=aes,encrypt.key-secret=sec0,encrypt.cipher-alg=aes-128',
                                            'R', '1M']),
            ('create encryption=on with iter-time', ['create', '--object', SECRET, '-f', 'qcow2', '-o',
                                                     'encryption=on,encrypt.key-secret=sec0,encrypt.iter-time=10',
                                                     'R', '1M']),
            ('convert -c with encryption', ['convert', '-c', '--object', SECRET, '-f', 'raw', '-O', 'qcow2', '-o',
                                            LUKS, src, 'R']),
            ('convert no key-secret', ['convert', '-f', 'raw', '-O', 'qcow2', '-o', 'encrypt.format=luks', src, 'R']),
            ('convert -n without the secret', ['convert', '-n', '-f', 'raw', src2, '-O', 'qcow2', target]),
            ('convert -n wrong passphrase', ['convert', '-n', '--object', 'secret,id=sec0,data=wrong', '-f', 'raw',
                                             src2, '--target-image-opts', opts(target)]),
        ]
        # A crypto header extension shorter than the LUKS key material (8192 bytes: the header only) or
        # than the header itself (512): qemu reads the LUKS header through the extension's bounds
        # (qcow2_crypto_hdr_read_func), so opening with the key says "Request for data outside of
        # extension header"; info, which reads only the LUKS header, still works with 8192.
        for length in (8192, 512):
            short = os.path.join(d, f'short-{length}.qcow2')
            with open(target, 'rb') as f:
                data = bytearray(f.read())
            at = data.find(bytes.fromhex('0537be77'), 72, 4096)
            data[at + 16:at + 24] = length.to_bytes(8, 'big')
            with open(short, 'wb') as f:
                f.write(data)
            cases += [
                (f'convert from a {length}-byte crypto header', ['convert', '--object', SECRET, '-O', 'raw',
                                                                  '--image-opts', opts(short), 'R']),
                (f'convert -n into a {length}-byte crypto header', ['convert', '-n', '--object', SECRET, '-f', 'raw',
                                                                     src2, '--target-image-opts', opts(short)]),
                (f'info of a {length}-byte crypto header', ['info', '--object', SECRET, '--image-opts', opts(short)]),
            ]
        # (each case against one oracle, alternating, to keep the run short: both word them alike)
        for i, (label, args) in enumerate(cases):
            for ver in (('7.2', '10.0')[i % 2],):
                qemu_img = QEMUS[ver][0]
                cd = os.path.join(d, 'refusal')
                os.makedirs(cd, exist_ok=True)
                for f in os.listdir(cd):
                    os.unlink(os.path.join(cd, f))
                q = run_fixture([qemu_img] + args, cwd=cd)
                for f in os.listdir(cd):
                    os.unlink(os.path.join(cd, f))
                m = qrun([instar] + args, cwd=cd, env=dict(os.environ, INSTAR_QEMU_VERSION=ver))
                qo = (q.returncode, norm(q.stdout, d, instar), norm(q.stderr, d, instar))
                mo = (m.returncode, norm(m.stdout, d, instar), norm(m.stderr, d, instar))
                results.append((f'{label} [qemu {ver}]', [] if qo == mo else [f'qemu {qo!r} ours {mo!r}']))
    return report(results)


if __name__ == '__main__':
    sys.exit(main())
