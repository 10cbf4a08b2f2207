"""Every LUKS cipher, mode, IV generator and hash once, against both qemu-img oracles.

A covering set of combinations (each cipher at each key size, each mode, each ivgen, each hash at
least once, essiv with every usable IV hash family): qemu-img makes the image (convert -O luks from
a plaintext source) and instar reads it (info as both versions, convert to raw compared byte for
byte with the source); instar makes the image (convert -O luks) and qemu-img 7.2 and 10.0 open it
(info equal to qemu's own image's apart from uuid and iteration counts, compare with the source).
sm3 is qemu 10.0's only (7.2's refusals of sm3 headers, luks and encrypted qcow2, after the
key-secret check where qemu opens with I/O, and options). Also: encrypted qcow2 with non-AES
ciphers read, the process sandbox, and
qemu's refusals (des, 3des, sm4, cast5 in xts, essiv without a cipher of the digest's size;
opening a header that names cast5 in xts).
192-bit keys outside xts are left out: qemu-img aborts on them (divergence luks-aes-192).

usage: luks_cipher_differential.py INSTAR"""
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'formats'))
from differential_support import QEMUS, report, start  # noqa: E402
from oracle_retry import run_fixture  # noqa: E402

SECRET = 'secret,id=sec0,data=cipher-pass'
SIZE = 1024 * 1024 + 512 * 3
# (cipher-alg, cipher-mode, ivgen-alg[:hash], hash-alg, the qemu version that also makes it or None).
# qemu's create spends a second or more of CPU calibrating PBKDF2 whatever iter-time says, so qemu
# makes a subset covering every cipher key size, mode, ivgen and hash; instar makes them all.
COMBOS = [
    ('serpent-128', 'xts', 'plain64', 'md5', '7.2'),
    ('serpent-192', 'xts', 'plain', 'sha1', '7.2'),
    ('serpent-256', 'cbc', 'essiv:sha256', 'sha512', '7.2'),
    ('twofish-128', 'ecb', 'plain64', 'sha224', '7.2'),
    ('twofish-192', 'xts', 'plain64', 'sha384', '7.2'),
    ('twofish-256', 'ctr', 'plain', 'ripemd160', '7.2'),
    ('cast5-128', 'cbc', 'essiv:md5', 'ripemd160', '7.2'),
    ('aes-192', 'xts', 'plain64', 'md5', '7.2'),
    ('aes-256', 'xts', 'plain64', 'sm3', '10.0'),
    ('serpent-256', 'ctr', 'plain64', 'ripemd160', None),
    ('serpent-128', 'cbc', 'essiv:md5', 'sha224', None),
    ('twofish-256', 'cbc', 'essiv:sha256', 'sha224', None),
    ('twofish-128', 'cbc', 'essiv:md5', 'sha1', None),
    ('twofish-256', 'xts', 'essiv:sha256', 'sha256', None),
    ('cast5-128', 'cbc', 'plain64', 'sha256', None),
    ('cast5-128', 'ctr', 'plain', 'md5', None),
    ('cast5-128', 'ecb', 'plain64', 'sha512', None),
    ('aes-128', 'ctr', 'plain64', 'ripemd160', None),
    ('aes-256', 'cbc', 'essiv:md5', 'sha256', None),
    ('aes-256', 'ctr', 'essiv:sha256', 'sha384', None),
    ('twofish-128', 'cbc', 'essiv:sm3', 'sha256', None),
]
# Encrypted qcow2 (the qcow2 plugin shares the LUKS code): qemu makes, instar reads.
QCOW2_COMBOS = [
    ('cast5-128', 'cbc', 'essiv:md5', 'ripemd160'),
]
# Refusals: (label, -o options), each compared with both binaries (exit code and message).
REFUSALS = [
    ('des', 'cipher-alg=des'),
    ('3des', 'cipher-alg=3des,cipher-mode=cbc'),
    ('sm4', 'cipher-alg=sm4'),
    ('cast5 xts', 'cipher-alg=cast5-128'),
    ('cast5 essiv sha256', 'cipher-alg=cast5-128,cipher-mode=cbc,ivgen-alg=essiv'),
    ('aes essiv sha1', 'cipher-mode=cbc,ivgen-alg=essiv,ivgen-hash-alg=sha1'),
    ('serpent essiv sha512', 'cipher-alg=serpent-256,cipher-mode=cbc,ivgen-alg=essiv,ivgen-hash-alg=sha512'),
    ('sm3 hash (7.2 refuses)', 'hash-alg=sm3'),
    ('sm3 ivgen hash (7.2 refuses)', 'cipher-mode=cbc,ivgen-alg=essiv,ivgen-hash-alg=sm3'),
    # 10.0 lists detached-header but its create refuses any value ("is unexpected"); 7.2 lacks the key.
    ('detached-header=on', 'detached-header=on'),
    ('detached-header=off', 'detached-header=off'),
    ('detached-header after a bad value', 'cipher-alg=foo,detached-header=on'),
]


def options(cipher, mode, ivgen, hash_alg, prefix=''):
    alg, _, ivhash = ivgen.partition(':')
    o = [f'{prefix}cipher-alg={cipher}', f'{prefix}cipher-mode={mode}', f'{prefix}ivgen-alg={alg}',
         f'{prefix}hash-alg={hash_alg}', f'{prefix}iter-time=10']
    if ivhash:
        o.append(f'{prefix}ivgen-hash-alg={ivhash}')
    return ','.join(o)


def info_text(cmd, img, env=None):
    p = subprocess.run(cmd + ['info', img], capture_output=True, text=True, env=env)
    keep = [x for x in p.stdout.splitlines() if not x.strip().startswith(('disk size', 'image:'))]
    # qemu 10.0's child node section names the file and its allocation.
    if 'Child node' in p.stdout:
        keep = keep[:[i for i, x in enumerate(keep) if x.startswith('Child node')][0]]
    return p.returncode, '\n'.join(keep), p.stderr


def anon(text):
    text = re.sub(r'uuid: \S+', 'uuid: U', text)
    return re.sub(r'iters: \d+', 'iters: N', text)


def luks_json(img, driver='luks', secret_key='key-secret'):
    return 'json:' + json.dumps({'driver': driver, secret_key: 'sec0', 'file': {'filename': img}})


def same(a, b):
    return open(a, 'rb').read() == open(b, 'rb').read()


# create and measure with detached-header but no size, or no secret (item 3 of issue 13's round 8).
DETACHED_NO_SIZE = [
    ('create on, no size', ['create', '-f', 'luks', '-o', 'detached-header=on', 'sizeless.luks']),
    ('create on, no size, secret', ['create', '--object', SECRET, '-f', 'luks', '-o',
                                    'key-secret=sec0,detached-header=on', 'sizeless.luks']),
    ('create on, no size, unknown secret', ['create', '-f', 'luks', '-o', 'key-secret=nosuch,detached-header=on',
                                            'sizeless.luks']),
    ('create off, no size', ['create', '--object', SECRET, '-f', 'luks', '-o',
                             'key-secret=sec0,detached-header=off', 'sizeless.luks']),
    ('create on, no size, bad cipher', ['create', '-f', 'luks', '-o', 'cipher-alg=foo,detached-header=on',
                                        'sizeless.luks']),
    ('measure on', ['measure', '-O', 'luks', '-o', 'detached-header=on', '--size', '1M']),
    ('measure off with a secret', ['measure', '--object', SECRET, '-O', 'luks', '-o',
                                   'key-secret=sec0,detached-header=off', '--size', '1M']),
    ('measure on, unknown secret', ['measure', '-O', 'luks', '-o', 'key-secret=nosuch,detached-header=on',
                                    '--size', '1M']),
    ('measure bad value', ['measure', '-O', 'luks', '-o', 'detached-header=foo', '--size', '1M']),
]


def detached_header_cases(instar, d, src):
    """luks's header= (qemu 9.0+): a qemu-made image split at its payload offset into a header file
    (its payload-offset field zeroed, as a detached header has it) and a data file, opened by every
    command that shares the open path, as each binary. qemu 7.2 has no header option: it opens the
    data file first ("Volume is not in LUKS format"), as instar under that profile."""
    whole = os.path.join(d, 'whole.luks')
    q = run_fixture([QEMUS['10.0'][0], 'convert', '--object', SECRET, '-f', 'raw', '-O', 'luks', '-o',
                     'key-secret=sec0,iter-time=10', src, whole])
    if q.returncode != 0:
        return [('detached: qemu 10.0 makes the image', [q.stderr.strip()])]
    data = open(whole, 'rb').read()
    payload = int.from_bytes(data[104:108], 'big') * 512
    header = bytearray(data[:payload])
    header[104:108] = bytes(4)
    with open(os.path.join(d, 'hdr.img'), 'wb') as f:
        f.write(header)
    with open(os.path.join(d, 'data.img'), 'wb') as f:
        f.write(data[payload:])
    keyed = 'json:' + json.dumps({'driver': 'luks', 'file': {'driver': 'file', 'filename': 'data.img'},
                                  'header': {'driver': 'file', 'filename': 'hdr.img'}, 'key-secret': 'sec0'})
    opts = 'driver=luks,file.filename=data.img,header.filename=hdr.img'
    cases = [('info', ['info', '--image-opts', opts]),
             ('info --output=json', ['info', '--output=json', '--image-opts', opts]),
             ('info json: with the secret', ['info', '--object', SECRET, keyed]),
             # --backing-chain: the header is a file the top needs, so the chain is walked level by
             # level (not in the one-start path), and JSON is still a list.
             ('info --backing-chain', ['info', '--backing-chain', '--image-opts', opts]),
             ('info --backing-chain --output=json', ['info', '--backing-chain', '--output=json', '--image-opts', opts]),
             ('convert', ['convert', '--object', SECRET, keyed, '-O', 'raw', 'detached.raw']),
             ('compare', ['compare', '--object', SECRET, keyed, '-F', 'raw', src]),
             ('compare --image-opts', ['compare', '--object', SECRET, '--image-opts', opts + ',key-secret=sec0',
                                       'driver=raw,file.filename=' + src]),
             ('dd', ['dd', '--object', SECRET, '--image-opts', f'if={opts},key-secret=sec0', 'of=detached.raw']),
             ('map', ['map', '--object', SECRET, keyed]),
             ('convert without a secret', ['convert', '--image-opts', opts, '-O', 'raw', 'detached.raw'])]
    results = []
    for label, args in cases:
        for ver, probs in as_each_version(instar, args, d).items():
            # qemu 7.2 asks for the secret before it opens the data file; instar inspects it first.
            if label == 'convert without a secret' and ver == '7.2':
                continue
            if not probs and label == 'convert' and ver == '10.0' and not same(os.path.join(d, 'detached.raw'), src):
                probs = ['converted data differs from the plaintext']
            results.append((f'detached header: {label} [qemu {ver}]', probs))
    return results


def as_each_version(instar, args, cwd, outputs=True):
    """Runs args with each qemu-img and with instar emulating it: {version: problems} comparing the exit
    code, stderr (program names masked) and, with outputs, stdout."""
    probs = {}
    for ver, (qemu_img, _) in QEMUS.items():
        q = run_fixture([qemu_img] + args, cwd=cwd)
        p = subprocess.run([instar] + args, capture_output=True, text=True, cwd=cwd,
                           env=dict(os.environ, INSTAR_QEMU_VERSION=ver))
        qo = (q.returncode, q.stderr.strip().replace(qemu_img, 'PROG').replace('qemu-img:', 'PROG:'),
              q.stdout if outputs else '')
        # Quirk cli-accepted-keys: instar names the accepted keys after an unknown one.
        err = '\n'.join(x for x in p.stderr.strip().splitlines() if not x.startswith('Accepted parameters: '))
        po = (p.returncode, err.replace(instar, 'PROG').replace('instar:', 'PROG:'), p.stdout if outputs else '')
        probs[ver] = [] if qo == po else [f'qemu {qo!r}\nours {po!r}']
    return probs


def main():
    args, status = start(__doc__, 1)
    if args is None:
        return status
    instar = os.path.abspath(args[0])
    results = []
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, 'src.raw')
        with open(src, 'wb') as f:
            f.write(os.urandom(200000))
            f.write(bytes(100000))
            f.write(os.urandom(50000))
            f.truncate(SIZE)

        for n, (cipher, mode, ivgen, hash_alg, maker) in enumerate(COMBOS):
            name = f'{cipher}-{mode}-{ivgen}-{hash_alg}'
            opts = 'key-secret=sec0,' + options(cipher, mode, ivgen, hash_alg)
            sm = 'sm3' in hash_alg or 'sm3' in ivgen
            versions = ['10.0'] if sm else list(QEMUS)
            newest = versions[-1]
            qimg, oimg = os.path.join(d, f'q{n}.luks'), os.path.join(d, f'o{n}.luks')
            env = dict(os.environ, INSTAR_QEMU_VERSION=newest)
            if maker is not None:
                q = run_fixture([QEMUS[maker][0], 'convert', '--object', SECRET, '-f', 'raw', '-O', 'luks', '-o',
                                 opts, src, qimg])
                if q.returncode != 0:
                    results.append((f'{name}: qemu {maker} makes it', [q.stderr.strip()]))
                    continue
                # instar reads qemu's image: info as each version, then the data.
                for ver in versions:
                    venv = dict(os.environ, INSTAR_QEMU_VERSION=ver)
                    qi, oi = info_text([QEMUS[ver][0]], qimg), info_text([instar], qimg, venv)
                    results.append((f'{name}: info [qemu {ver}]', [] if qi == oi else [
                        f'\nqemu:\n{qi}\nours:\n{oi}']))
                back = os.path.join(d, f'back{n}.raw')
                c = subprocess.run([instar, 'convert', '--object', SECRET, luks_json(qimg), '-O', 'raw', back],
                                   capture_output=True, text=True, env=env)
                results.append((f'{name}: instar reads qemu {maker}\'s image', [
                    f'exit {c.returncode}: {c.stderr.strip()}'] if c.returncode != 0 else [] if same(back, src) else [
                    'decrypted data differs']))
            # qemu reads instar's image.
            c = subprocess.run([instar, 'convert', '--object', SECRET, '-f', 'raw', '-O', 'luks', '-o', opts, src,
                                oimg], capture_output=True, text=True, env=env)
            if c.returncode != 0:
                results.append((f'{name}: instar makes it', [f'exit {c.returncode}: {c.stderr.strip()}']))
                continue
            for ver in versions:
                qemu_img = QEMUS[ver][0]
                oi = info_text([qemu_img], oimg)
                if maker is not None:
                    qi = info_text([qemu_img], qimg)
                    probs = [] if anon(qi[1]) == anon(oi[1]) else [f'\nqemu\'s:\n{qi[1]}\nours:\n{oi[1]}']
                else:
                    alg, _, ivhash = ivgen.partition(':')
                    want = [f'cipher alg: {cipher}', f'cipher mode: {mode}', f'ivgen alg: {alg}', f'hash alg: {hash_alg}']
                    want += [f'ivgen hash alg: {ivhash}'] if ivhash else []
                    probs = [f'missing {w!r}: {oi}' for w in want if w not in oi[1]]
                results.append((f'{name}: instar\'s image info [qemu {ver}]', probs))
                r = subprocess.run([qemu_img, 'compare', '--object', SECRET, luks_json(oimg), '-F', 'raw', src],
                                   capture_output=True, text=True)
                results.append((f'{name}: instar\'s image [qemu {ver} compare]', [] if r.returncode == 0 else [
                    f'{r.returncode} {r.stdout.strip()} {r.stderr.strip()}']))

        # Encrypted qcow2 with the other ciphers: qemu 7.2 makes, instar reads.
        for n, (cipher, mode, ivgen, hash_alg) in enumerate(QCOW2_COMBOS):
            name = f'qcow2 {cipher}-{mode}-{ivgen}-{hash_alg}'
            img = os.path.join(d, f'enc{n}.qcow2')
            opts = 'encrypt.format=luks,encrypt.key-secret=sec0,' + options(cipher, mode, ivgen, hash_alg, 'encrypt.')
            q = run_fixture([QEMUS['7.2'][0], 'convert', '--object', SECRET, '-f', 'raw', '-O', 'qcow2', '-o', opts,
                             src, img])
            if q.returncode != 0:
                results.append((f'{name}: qemu makes it', [q.stderr.strip()]))
                continue
            back = os.path.join(d, f'encback{n}.raw')
            c = subprocess.run([instar, 'convert', '--object', SECRET,
                                luks_json(img, 'qcow2', 'encrypt.key-secret'), '-O', 'raw', back],
                               capture_output=True, text=True)
            results.append((f'{name}: instar reads it', [f'exit {c.returncode}: {c.stderr.strip()}']
                            if c.returncode != 0 else [] if same(back, src) else ['decrypted data differs']))

        # The process sandbox (its own runtime build) reads a serpent image qemu made.
        back = os.path.join(d, 'process.raw')
        c = subprocess.run([instar, '--sandbox', 'process', 'convert', '--object', SECRET,
                            luks_json(os.path.join(d, 'q2.luks')), '-O', 'raw', back], capture_output=True, text=True)
        results.append(('process sandbox reads serpent-256-cbc-essiv', [f'exit {c.returncode}: {c.stderr.strip()}']
                        if c.returncode != 0 else [] if same(back, src) else ['decrypted data differs']))

        # An image naming cast5 in xts (serpent-128-xts's header renamed: same key length and layout):
        # opened by each binary, qemu's "Unsupported cipher mode xts".
        bad = os.path.join(d, 'cast5-xts.luks')
        with open(os.path.join(d, 'q0.luks'), 'rb') as f:
            data = bytearray(f.read())
        data[8:40] = b'cast5'.ljust(32, b'\0')
        with open(bad, 'wb') as f:
            f.write(data)
        args = ['convert', '--object', SECRET, luks_json(bad), '-O', 'raw', os.path.join(d, 'bad.raw')]
        for ver, probs in as_each_version(instar, args, d, outputs=False).items():
            results.append((f'open cast5 xts [qemu {ver}]', probs))

        # sm3 (qemu 9.0+) under each profile: qemu 7.2 cannot parse a header naming it, as the
        # PBKDF2 hash or essiv's IV hash, nor a qcow2 encryption header that does ("Hash algorithm
        # 'sm3' not supported"); 10.0 opens them.
        sm3_qcow2 = os.path.join(d, 'sm3.qcow2')
        q = run_fixture([QEMUS['10.0'][0], 'convert', '--object', SECRET, '-f', 'raw', '-O', 'qcow2', '-o',
                         'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.hash-alg=sm3,encrypt.iter-time=10',
                         src, sm3_qcow2])
        if q.returncode != 0:
            results.append(('sm3 qcow2: qemu 10.0 makes it', [q.stderr.strip()]))
        sm3_images = [(img, luks_json(img)) for img in (os.path.join(d, f'{k}{n}.luks') for k in 'qo'
                      for n, c in enumerate(COMBOS) if 'sm3' in c[2] + c[3]) if os.path.exists(img)]
        sm3_images.append((sm3_qcow2, luks_json(sm3_qcow2, 'qcow2', 'encrypt.key-secret')))
        for img, opts in sm3_images:
            base = os.path.basename(img)
            cases = [(f'info {base}', ['info', img]),
                     (f'info --output=json {base}', ['info', '--output=json', img]),
                     (f'convert {base}', ['convert', '--object', SECRET, opts, '-O', 'raw', 'sm3.raw']),
                     (f'compare {base}', ['compare', '--object', SECRET, opts, '-F', 'raw', src])]
            # Without a key-secret both binaries ask for it before they parse the header (7.2's info
            # alone, opened without I/O, refuses sm3 first), luks and encrypted qcow2 alike.
            cases += [(f'convert {base} without a secret', ['convert', '-O', 'raw', img, 'sm3.raw']),
                      (f'compare {base} without a secret', ['compare', '-F', 'raw', img, src]),
                      (f'dd {base} without a secret', ['dd', f'if={img}', 'of=sm3.raw']),
                      (f'map {base} without a secret', ['map', img])]
            if img.endswith('.qcow2'):
                cases += [(f'check {base} without a secret', ['check', img]),
                          (f'measure {base} without a secret', ['measure', '-O', 'raw', img]),
                          (f'snapshot -l {base} without a secret', ['snapshot', '-l', img])]
            for label, args in cases:
                for ver, probs in as_each_version(instar, args, d).items():
                    results.append((f'sm3: {label} [qemu {ver}]', probs))

        # Refusals, as each binary: exit code and message.
        for label, o in REFUSALS:
            args = ['create', '--object', SECRET, '-f', 'luks', '-o', 'key-secret=sec0,iter-time=10,' + o,
                    'refused.luks', '1M']
            # The image is created anew by each run (create truncates), so no clean-up between them.
            for ver, probs in as_each_version(instar, args, d, outputs=False).items():
                results.append((f'refusal {label} [qemu {ver}]', probs))
        results += detached_header_cases(instar, d, src)
        # detached-header without a size: 10.0 needs none (bdrv_img_create), prints size=-1 and then
        # refuses the option; measure refuses it at any value before asking for the secret.
        for label, args in DETACHED_NO_SIZE:
            for ver, probs in as_each_version(instar, args, d).items():
                results.append((f'detached-header {label} [qemu {ver}]', probs))
            if os.path.exists(os.path.join(d, 'sizeless.luks')):
                results.append((f'detached-header {label}: no file made', ['sizeless.luks exists']))
    return report(results)


if __name__ == '__main__':
    sys.exit(main())
