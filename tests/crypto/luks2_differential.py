"""LUKS2 volumes (an instar extension; docs/formats/luks.md, "LUKS2") made by cryptsetup on plain
files (offline encryption: `cryptsetup reencrypt --encrypt`, no device-mapper) and read by instar:
convert to raw against the plaintext (pbkdf2, argon2i, argon2id key slots; 512- and 4096-byte
sectors; aes-xts and aes-cbc-essiv), info (human and JSON), compare, map, dd, both sandboxes; a wrong
passphrase, damaged and hostile metadata (re-checksummed), an argon2 memory cost above the sandbox;
convert -n into each (read back, header kept, cryptsetup still unlocks it), resize of a dynamic
segment, and the refusals to amend one or resize a fixed segment. qemu-img reads LUKS2 as raw: the check runs it once to show it.

usage: luks2_differential.py INSTAR"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'formats'))
from differential_support import QEMUS, report, start  # noqa: E402

CRYPTSETUP = shutil.which('cryptsetup') or '/usr/sbin/cryptsetup'
PASS = 'instar-luks2-pass'
PASS2 = 'second-pass'
SECRET = f'secret,id=sec0,data={PASS}'
PLAIN_SIZE = 1 << 20
# (name, cryptsetup reencrypt options, passphrase that opens the result, change after encryption)
VARIANTS = [
    ('pbkdf2-512', ['--pbkdf', 'pbkdf2', '--pbkdf-force-iterations', '1000'], PASS, None),
    ('argon2id-4096', ['--pbkdf', 'argon2id', '--pbkdf-memory', '32768', '--pbkdf-force-iterations', '4',
                       '--pbkdf-parallel', '2', '--sector-size', '4096'], PASS, None),
    ('argon2i', ['--pbkdf', 'pbkdf2', '--pbkdf-force-iterations', '1000'], PASS2, 'argon2i'),
    ('cbc-essiv', ['--pbkdf', 'pbkdf2', '--pbkdf-force-iterations', '1000', '--cipher', 'aes-cbc-essiv:sha256',
                   '--key-size', '256'], PASS, None),
]


def cryptsetup(args, d, stdin=None):
    p = subprocess.run([CRYPTSETUP, '-q'] + args, capture_output=True, text=True, cwd=d, input=stdin)
    if p.returncode != 0:
        raise RuntimeError(f'cryptsetup {" ".join(args)}: {p.stderr.strip()}')
    return p.stdout


def make_volume(d, name, opts, change, plain):
    """cryptsetup's offline encryption of `plain` in place (the header goes in front, the data moves
    behind it), cut back to header + data so the payload is exactly the plaintext."""
    path = os.path.join(d, f'{name}.img')
    key = os.path.join(d, 'key')
    with open(key, 'w') as f:
        f.write(PASS)
    shift = 4 << 20
    with open(path, 'wb') as f:
        f.write(plain)
        f.truncate(len(plain) + shift)
    cryptsetup(['reencrypt', '--encrypt', '--type', 'luks2', '--reduce-device-size', str(shift),
                '--luks2-keyslots-size', '1m', '--key-file', key] + opts + [path], d)
    meta = json.loads(cryptsetup(['luksDump', '--dump-json-metadata', path], d))
    offset = int(meta['segments']['0']['offset'])
    with open(path, 'r+b') as f:
        f.truncate(offset + len(plain))
    if change:  # an argon2 slot for PASS2, and slot 0 (pbkdf2, PASS) removed
        key2 = os.path.join(d, 'key2')
        with open(key2, 'w') as f:
            f.write(PASS2)
        cryptsetup(['luksAddKey', '--key-file', key, '--pbkdf', change, '--pbkdf-memory', '32768',
                    '--pbkdf-force-iterations', '4', '--pbkdf-parallel', '1', path, key2], d)
        cryptsetup(['luksKillSlot', '--key-file', key2, path, '0'], d)
    return path, offset


def rewrite_metadata(src, dst, change):
    """A copy of volume `src` whose metadata text (both copies) is change(text), checksums made valid."""
    b = bytearray(open(src, 'rb').read())
    hdr = int.from_bytes(b[8:16], 'big')
    for off in (0, hdr):
        text = bytes(b[off + 4096:off + hdr]).split(b'\0')[0].decode()
        new = change(text).encode()
        b[off + 4096:off + hdr] = new + b'\0' * (hdr - 4096 - len(new))
        b[off + 448:off + 512] = b'\0' * 64
        b[off + 448:off + 480] = hashlib.sha256(bytes(b[off:off + hdr])).digest()
    with open(dst, 'wb') as f:
        f.write(b)


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, **kw)


def image_opts(path, secret_id='sec0'):
    return f'driver=luks,key-secret={secret_id},file.filename={path}'


def main():
    args, status = start(__doc__, 1, required=(CRYPTSETUP,), sandboxed=True)
    if args is None:
        return status
    instar = os.path.abspath(args[0])
    results = []

    def check(label, ok, detail=''):
        results.append((label, [] if ok else [detail or 'failed']))

    with tempfile.TemporaryDirectory() as d:
        plain = os.urandom(PLAIN_SIZE - 8192) + b'\x5a' * 8192
        plain_path = os.path.join(d, 'plain.raw')
        with open(plain_path, 'wb') as f:
            f.write(plain)
        vols = {}
        for name, opts, pw, change in VARIANTS:
            vols[name] = make_volume(d, name, opts, change, plain) + (pw,)

        for name, (path, offset, pw) in vols.items():
            secret = f'secret,id=sec0,data={pw}'
            # convert: -f luks with key-secret in --image-opts, and the json: spelling; both sandboxes.
            for label, spelling in (('image-opts', ['--image-opts', image_opts(path)]),
                                    ('json', ['json:' + json.dumps({'driver': 'luks', 'key-secret': 'sec0',
                                                                    'file': {'filename': path}})])):
                for sandbox in (['--sandbox', 'kvm'] if os.path.exists('/dev/kvm') else []), ['--sandbox', 'process']:
                    out = os.path.join(d, f'{name}.out.raw')
                    o = run([instar] + sandbox + ['convert', '--object', secret] + spelling + ['-O', 'raw', out])
                    got = open(out, 'rb').read() if o.returncode == 0 else None
                    check(f'convert {name} {label} {" ".join(sandbox)}', got == plain,
                          f'exit {o.returncode}: {o.stderr.strip()}' if got is None else 'data differs')
            # info: probed as luks without -f; the LUKS1 shape.
            o = run([instar, 'info', '--output=json', path])
            info = json.loads(o.stdout) if o.returncode == 0 else {}
            spec = info.get('format-specific', {}).get('data', {})
            meta = json.loads(cryptsetup(['luksDump', '--dump-json-metadata', path], d))
            uuid = cryptsetup(['luksUUID', path], d).strip()
            slot_ids = sorted(int(k) for k in meta['keyslots'])
            want_alg = {'pbkdf2-512': 'aes-256', 'argon2id-4096': 'aes-256', 'argon2i': 'aes-256',
                        'cbc-essiv': 'aes-256'}[name]
            probs = []
            for k, v in (('format', 'luks'), ('virtual-size', len(plain)), ('encrypted', True)):
                if info.get(k) != v:
                    probs.append(f'{k}: {info.get(k)!r} != {v!r}')
            want = {'cipher-alg': want_alg, 'cipher-mode': 'cbc' if name == 'cbc-essiv' else 'xts',
                    'ivgen-alg': 'essiv' if name == 'cbc-essiv' else 'plain64', 'hash-alg': 'sha256',
                    'payload-offset': offset, 'uuid': uuid,
                    'master-key-iters': meta['digests']['0']['iterations']}
            for k, v in want.items():
                if spec.get(k) != v:
                    probs.append(f'{k}: {spec.get(k)!r} != {v!r}')
            slots = spec.get('slots', [])
            active = [i for i, s in enumerate(slots) if s.get('active')]
            if active != slot_ids or len(slots) != 8:
                probs.append(f'slots {slots}')
            for i in slot_ids:
                ks = meta['keyslots'][str(i)]
                it = ks['kdf'].get('iterations', ks['kdf'].get('time'))
                if (slots[i].get('iters'), slots[i].get('key-offset')) != (it, int(ks['area']['offset'])):
                    probs.append(f'slot {i}: {slots[i]}')
            check(f'info json {name}', not probs, '; '.join(probs) + o.stderr)
            o = run([instar, 'info', path])
            lines = o.stdout.splitlines()
            check(f'info human {name}', o.returncode == 0 and 'file format: luks' in lines and
                  f'virtual size: 1 MiB ({len(plain)} bytes)' in lines and 'Format specific information:' in lines and
                  f'    uuid: {uuid}' in lines, o.stdout + o.stderr)

        # The other commands that read through the luks reader, on one volume.
        path, offset, _ = vols['argon2id-4096']
        js = 'json:' + json.dumps({'driver': 'luks', 'key-secret': 'sec0', 'file': {'filename': path}})
        o = run([instar, 'compare', '--object', SECRET, js, '-F', 'raw', plain_path])
        check('compare identical', (o.returncode, o.stdout) == (0, 'Images are identical.\n'), o.stdout + o.stderr)
        changed = os.path.join(d, 'changed.raw')
        with open(changed, 'wb') as f:
            f.write(plain[:5000] + bytes([plain[5000] ^ 1]) + plain[5001:])
        o = run([instar, 'compare', '--object', SECRET, js, '-F', 'raw', changed])
        check('compare differs', o.returncode == 1 and 'Content mismatch at offset 4608!' in o.stdout,
              o.stdout + o.stderr)
        o = run([instar, 'map', '--output=json', '--object', SECRET, js])
        try:
            m = json.loads(o.stdout)
            ok = o.returncode == 0 and sum(e['length'] for e in m) == len(plain) and all(e['data'] for e in m)
        except ValueError:
            ok = False
        check('map', ok, o.stdout + o.stderr)
        out = os.path.join(d, 'dd.raw')
        o = run([instar, 'dd', '--object', SECRET, '--image-opts', image_opts(path), f'of={out}', 'bs=4096',
                 'count=16', '-O', 'raw'] if False else
                [instar, 'dd', '--object', SECRET, '--image-opts', f'if={image_opts(path)}', f'of={out}', 'bs=4096',
                 'count=16', '-O', 'raw'])
        if o.returncode != 0:  # dd's own spelling: -f luks with the key in the json: name
            o = run([instar, 'dd', '--object', SECRET, f'if={js}', f'of={out}', 'bs=4096', 'count=16', '-O', 'raw'])
        check('dd', o.returncode == 0 and open(out, 'rb').read() == plain[:65536], o.stderr)
        # qcow2 output from a LUKS2 volume.
        q = os.path.join(d, 'out.qcow2')
        o = run([instar, 'convert', '--object', SECRET, '--image-opts', image_opts(path), '-O', 'qcow2', q])
        o2 = run([QEMUS['10.0'][0], 'compare', '-f', 'qcow2', '-F', 'raw', q, plain_path])
        check('convert -O qcow2', o.returncode == 0 and o2.returncode == 0, o.stderr + o2.stdout + o2.stderr)

        # measure (and check) unlock before they work, in core's unlock_image: a 16 MiB guest first,
        # rerun with more RAM (vmm::roomier) when the argon2 slot does not fit.
        pb, _, _ = vols['pbkdf2-512']
        o = run([instar, 'measure', '--object', SECRET, '-O', 'qcow2', '--image-opts', image_opts(pb)])
        check('measure pbkdf2', o.returncode == 0 and 'required size:' in o.stdout, o.stdout + o.stderr)
        o = run([instar, 'measure', '--object', SECRET, '-O', 'qcow2', '--image-opts', image_opts(path)])
        check('measure argon2 32 MiB (unlock reruns with more RAM)', o.returncode == 0 and
              'required size:' in o.stdout, o.stdout + o.stderr)
        o = run([instar, '--max-guest-memory', '16M', 'measure', '--object', SECRET, '-O', 'qcow2', '--image-opts',
                 image_opts(path)])
        check('measure argon2 32 MiB under a 16M cap', o.returncode == 1 and
              'needs 32 MiB of guest memory' in o.stderr and 'raise --max-guest-memory' in o.stderr,
              o.stdout + o.stderr)

        # Refusals: instar's words, the file named.
        path, offset, _ = vols['pbkdf2-512']
        base = os.path.basename(path)

        def refusal(label, args, want, image):
            """instar refuses with `want` in its message, which names `image` ("Could not open ...")."""
            o = run([instar] + args, cwd=d)
            check(f'refusal {label}', o.returncode == 1 and want in o.stderr and
                  f"Could not open '" in o.stderr and image in o.stderr,
                  f'exit {o.returncode}: {o.stderr.strip()!r}, want {want!r}')

        out = os.path.join(d, 'r.raw')
        refusal('wrong passphrase', ['convert', '--object', 'secret,id=sec0,data=nope', '--image-opts',
                                     image_opts(path), '-O', 'raw', out],
                "Invalid password, cannot unlock any keyslot", path)
        refusal('no key', ['convert', '-f', 'luks', path, out], "Parameter 'key-secret' is required for cipher", path)
        hostile = [
            ('damaged json (checksum)', None, 'LUKS2 header checksum is wrong in both copies'),
            ('damaged json (re-checksummed)', lambda t: t.replace('"segments":{', '"segments":{{', 1),
             'LUKS2 metadata is not valid JSON'),
            ('json nested too deep', lambda t: t.replace('"tokens":{}', '"tokens":' + '[' * 40 + ']' * 40, 1),
             'LUKS2 metadata is not valid JSON (nesting too deep'),
            ('absurd iterations', lambda t: t.replace('"iterations":1000', '"iterations":4000000000', 1),
             'PBKDF2 iterations (at most 67108864)'),
            ('absurd stripes', lambda t: t.replace('"stripes":4000', '"stripes":400000000', 1),
             'anti-forensic split is not luks1 with 4000 stripes'),
            ('absurd key size', lambda t: t.replace('"key_size":64', '"key_size":4096', 1),
             'key size is not 1 to 64 bytes'),
            ('segment past the file', lambda t: t.replace('"size":"dynamic"', f'"size":"{2 * PLAIN_SIZE}"', 1),
             'LUKS2 segment 0 ends past the end of the file'),
            ('segment offset past the file', lambda t: t.replace(f'"offset":"{offset}"', '"offset":"1099511627776"', 1),
             'LUKS2 segment 0 starts past the end of the file'),
            ('area overlaps the header', lambda t: t.replace('"offset":"32768"', '"offset":"4096"', 1),
             'area overlaps the LUKS2 header'),
        ]
        for label, change, want in hostile:
            bad = os.path.join(d, 'hostile.img')
            if change is None:
                b = bytearray(open(path, 'rb').read())
                hdr = int.from_bytes(b[8:16], 'big')
                b[4096 + 20] ^= 0x20
                b[hdr + 4096 + 20] ^= 0x20
                open(bad, 'wb').write(b)
            else:
                rewrite_metadata(path, bad, change)
            refusal(label + ' (info)', ['info', bad], want, bad)
            refusal(label + ' (convert)', ['convert', '--object', SECRET, '--image-opts', image_opts(bad), '-O',
                                           'raw', out], want, bad)
        # argon2 memory the sandbox cannot give: named with --max-guest-memory, never a crash.
        a2, _, _ = vols['argon2id-4096']
        bad = os.path.join(d, 'hostile.img')
        rewrite_metadata(a2, bad, lambda t: t.replace('"memory":32768', '"memory":4194304', 1))
        refusal('argon2 memory above the sandbox',
                ['convert', '--object', SECRET, '--image-opts', image_opts(bad), '-O', 'raw', out],
                "needs 4096 MiB of guest memory, more than the sandbox has: raise --max-guest-memory", bad)
        refusal('argon2 memory above the largest guest (measure: 16M, 256M, 3G)',
                ['measure', '--object', SECRET, '-O', 'qcow2', '--image-opts', image_opts(bad)],
                "needs 4096 MiB of guest memory, more than the sandbox has: raise --max-guest-memory", bad)
        refusal('argon2 memory above the sandbox (process)',
                ['--sandbox', 'process', 'convert', '--object', SECRET, '--image-opts', image_opts(bad), '-O', 'raw',
                 out], 'raise --max-guest-memory', bad)
        # Amending a LUKS2 volume, resizing one whose segment has a fixed size, or to a size that is
        # not whole sectors of its segment, a wrong passphrase: refused by name, the volume untouched.
        wr = os.path.join(d, 'write.img')
        fixed = os.path.join(d, 'fixed.img')
        rewrite_metadata(path, fixed, lambda t: t.replace('"size":"dynamic"', f'"size":"{PLAIN_SIZE}"', 1))
        a2, _, _ = vols['argon2id-4096']
        for label, src, cmd, want in (
                ('amend', path, ['amend', '--object', SECRET, '--object', 'secret,id=sec1,data=x', '--image-opts',
                                 image_opts(wr), '-o', 'state=active,new-secret=sec1,iter-time=10'],
                 'instar cannot amend LUKS2 volumes'),
                ('resize of a fixed segment', fixed, ['resize', '--object', SECRET, '--image-opts', image_opts(wr),
                                                      '2M'], 'whose segment has a fixed size'),
                ('resize inside a 4096-byte sector', a2, ['resize', '--object', SECRET, '--image-opts',
                                                          image_opts(wr), str(2 * PLAIN_SIZE + 512)],
                 'LUKS2 segment 0 has 4096-byte sectors: the new size must be a multiple of 4096'),
                ('resize with a wrong passphrase', path, ['resize', '--object', 'secret,id=sec0,data=nope',
                                                          '--image-opts', image_opts(wr), '2M'],
                 'Invalid password, cannot unlock any keyslot'),
                ('shrink without --shrink', path, ['resize', '--object', SECRET, '--image-opts', image_opts(wr),
                                                   '512K'], 'Use the --shrink option to perform a shrink operation')):
            shutil.copy(src, wr)
            o = run([instar] + cmd)
            check(f'refused {label}', o.returncode != 0 and want in o.stderr and
                  open(wr, 'rb').read() == open(src, 'rb').read(), f'exit {o.returncode}: {o.stderr.strip()!r}')

        # resize of a dynamic segment: the file after the segment's offset, as LUKS1's; the metadata
        # unchanged, so cryptsetup still unlocks it and sees the new size; grown sectors hold what
        # their zeros decrypt to (qemu's LUKS1 resize likewise), shrunk ones are gone.
        for name, size, extra in (('pbkdf2-512', 2 * PLAIN_SIZE, []), ('argon2id-4096', 3 * PLAIN_SIZE, []),
                                  ('pbkdf2-512', PLAIN_SIZE // 2, ['--shrink'])):
            vpath, offset, pw = vols[name]
            secret = f'secret,id=sec0,data={pw}'
            shutil.copy(vpath, wr)
            o = run([instar, 'resize', '--object', secret] + extra + ['--image-opts', image_opts(wr), str(size)])
            o2 = run([instar, 'info', '--output=json', wr])
            vsize = json.loads(o2.stdout).get('virtual-size') if o2.returncode == 0 else None
            out = os.path.join(d, 'back.raw')
            o3 = run([instar, 'convert', '--object', secret, '--image-opts', image_opts(wr), '-O', 'raw', out])
            got = open(out, 'rb').read() if o3.returncode == 0 else b''
            t = subprocess.run([CRYPTSETUP, 'open', '--test-passphrase', '--key-file', '-', wr], input=pw.encode(),
                               capture_output=True)
            keep = min(size, PLAIN_SIZE)
            check(f'resize {name} to {size}', o.returncode == 0 and o.stdout == 'Image resized.\n' and
                  vsize == size and os.path.getsize(wr) == offset + size and got[:keep] == plain[:keep] and
                  len(got) == size and open(wr, 'rb').read(offset) == open(vpath, 'rb').read(offset) and
                  t.returncode == 0, f'exit {o.returncode} {o.stdout!r} {o.stderr!r}, size {vsize}, cryptsetup '
                  f'{t.returncode} {o3.stderr}')

        # convert -n writes a LUKS2 volume's payload (every variant: 512- and 4096-byte sectors, xts
        # and cbc-essiv, pbkdf2 and argon2 slots), both sandboxes: instar reads back what it wrote,
        # the header and key slots are untouched and cryptsetup still unlocks the volume. A source
        # shorter than the volume ending inside a 4096-byte unit keeps the rest of that unit.
        new = os.urandom(PLAIN_SIZE)
        new_path = os.path.join(d, 'new.raw')
        with open(new_path, 'wb') as f:
            f.write(new)
        short_path = os.path.join(d, 'short.raw')
        with open(short_path, 'wb') as f:
            f.write(new[:5120])  # ten 512-byte sectors: a 4096-byte unit and a quarter
        for name, (vpath, offset, pw) in vols.items():
            secret = f'secret,id=sec0,data={pw}'
            for sandbox in (['--sandbox', 'kvm'] if os.path.exists('/dev/kvm') else []), ['--sandbox', 'process']:
                label = f'{name} {" ".join(sandbox)}'
                for src, want in ((new_path, new), (short_path, new[:5120] + plain[5120:])):
                    wr = os.path.join(d, 'write.img')
                    shutil.copy(vpath, wr)
                    o = run([instar] + sandbox + ['convert', '-n', '--object', secret, '-f', 'raw', src,
                                                  '--target-image-opts', image_opts(wr)])
                    if o.returncode != 0:
                        check(f'convert -n {label} {os.path.basename(src)}', False, f'exit {o.returncode}: {o.stderr}')
                        continue
                    out = os.path.join(d, 'back.raw')
                    o = run([instar, 'convert', '--object', secret, '--image-opts', image_opts(wr), '-O', 'raw', out])
                    got = open(out, 'rb').read() if o.returncode == 0 else None
                    before, after = open(vpath, 'rb').read(), open(wr, 'rb').read()
                    t = subprocess.run([CRYPTSETUP, 'open', '--test-passphrase', '--key-file', '-', wr],
                                       input=pw.encode(), capture_output=True)
                    check(f'convert -n {label} {os.path.basename(src)}',
                          got == want and after[:offset] == before[:offset] and len(after) == len(before) and
                          t.returncode == 0,
                          f'read back {"ok" if got == want else "differs"}, header '
                          f'{"kept" if after[:offset] == before[:offset] else "changed"}, cryptsetup '
                          f'{t.returncode}: {t.stderr.decode().strip()} {o.stderr}')
        # qemu-img reads LUKS2 as raw, and so does instar under --unsafe-quirks (qemu's probe).
        o = run([QEMUS['10.0'][0], 'info', '--output=json', path])
        check('qemu-img probes raw', o.returncode == 0 and json.loads(o.stdout)['format'] == 'raw', o.stderr)
        o = run([instar, 'info', '--unsafe-quirks', '--output=json', path])
        check('instar --unsafe-quirks probes raw', o.returncode == 0 and json.loads(o.stdout)['format'] == 'raw',
              o.stdout + o.stderr)
    return report(results)


if __name__ == '__main__':
    sys.exit(main())
