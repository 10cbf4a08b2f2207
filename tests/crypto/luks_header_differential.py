"""Damaged LUKS headers and the key-secret order, against both qemu-img oracles (docs/formats/luks.md,
"Header checks").

From one LUKS image and one LUKS-encrypted qcow2 made by qemu-img, every field qemu's
crypto/block-luks.c checks is damaged in turn (magic, version, unterminated names, payload offset,
iteration counts, key slot stripes, state, overlaps with qemu's 32-bit arithmetic, unknown cipher,
mode, IV generator and hashes, ESSIV without a hash). Each is opened by `info` (no I/O: the header's
own refusal), by `map` without a key (qemu asks for the key-secret before it reads the header) and
by `convert` with the key; qemu-img 7.2 and 10.0 set the expected message and exit code. Then a file
that is not LUKS, forced to luks, goes through every command that opens an image for I/O, and a
damaged header serves as create's backing file.

usage: luks_header_differential.py INSTAR"""
import os
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'formats'))
from differential_support import QEMUS, report, start  # noqa: E402
from oracle_retry import run_fixture  # noqa: E402

PASS = 'instar-test-passphrase'
SECRET = f'secret,id=sec0,data={PASS}'
SLOTS = 208  # the first key slot; each is 48 bytes: active, iterations, salt[32], key offset, stripes


def be32(b, at, v):
    b[at:at + 4] = struct.pack('>I', v)


def name(b, at, text):
    b[at:at + 32] = text.ljust(32, b'\0')[:32]


def slot(i, field):
    return SLOTS + 48 * i + {'active': 0, 'iter': 4, 'offset': 40, 'stripes': 44}[field]


# (label, change to the header bytes at offset 0 of the LUKS header)
CASES = [
    ('magic', lambda b: b.__setitem__(slice(0, 1), b'X')),
    ('version2', lambda b: b.__setitem__(slice(6, 8), b'\0\2')),
    ('cipher-name-unterminated', lambda b: name(b, 8, b'a' * 32)),
    ('cipher-mode-unterminated', lambda b: name(b, 40, b'b' * 32)),
    ('hash-spec-unterminated', lambda b: name(b, 72, b'c' * 32)),
    ('payload-in-header', lambda b: be32(b, 104, 1)),
    ('payload-zero', lambda b: be32(b, 104, 0)),
    ('mk-iterations-zero', lambda b: be32(b, 164, 0)),
    ('stripes', lambda b: be32(b, slot(3, 'stripes'), 5)),
    ('stripes-negative', lambda b: be32(b, slot(3, 'stripes'), 0xfffffffe)),
    ('slot-state', lambda b: be32(b, slot(2, 'active'), 1)),
    ('slot-iterations-zero', lambda b: be32(b, slot(0, 'iter'), 0)),
    ('slot-over-header', lambda b: be32(b, slot(0, 'offset'), 1)),
    ('slot-over-payload', lambda b: be32(b, slot(7, 'offset'), 4000)),
    ('slot-wraps', lambda b: be32(b, slot(7, 'offset'), 0xfffffff0)),  # qemu's unsigned sum wraps: opens
    ('slots-overlap', lambda b: be32(b, slot(5, 'offset'), struct.unpack('>I', b[slot(4, 'offset'):slot(4, 'offset') + 4])[0])),
    ('key-2MiB', lambda b: be32(b, 108, 0x200000)),  # the 32-bit product wraps into an overlap
    ('key-2GiB', lambda b: be32(b, 108, 0x80000000)),  # ... or to nothing: the cipher lookup refuses
    ('key-odd', lambda b: be32(b, 108, 1073742)),
    ('cipher', lambda b: name(b, 8, b'foo')),
    ('mode-no-dash', lambda b: name(b, 40, b'xtsplain64')),
    ('mode', lambda b: name(b, 40, b'foo-plain64')),
    ('ivgen', lambda b: name(b, 40, b'xts-foo')),
    ('ivhash', lambda b: name(b, 40, b'foo-plain64:md7')),
    ('essiv-no-hash', lambda b: name(b, 40, b'cbc-essiv')),
    ('essiv-sha1', lambda b: (name(b, 40, b'cbc-essiv:sha1'), be32(b, 108, 32))),
    ('hash', lambda b: name(b, 72, b'sha2566')),
    ('hash-empty', lambda b: name(b, 72, b'')),
]


def norm(text, d, exe):
    for prog in (exe, QEMUS['7.2'][0], QEMUS['10.0'][0]):
        text = text.replace(prog, 'PROG')
    return text.replace(d + '/', '').replace('qemu-img:', 'PROG:').replace('instar:', 'PROG:')


def compare(results, label, args, d, instar, cwd, mine=None):
    """Runs `args` with each oracle and instar (`mine` instead, when given) under that oracle's
    profile; stderr and status match."""
    for ver, (qemu_img, _) in QEMUS.items():
        q = subprocess.run([qemu_img] + args, capture_output=True, text=True, cwd=cwd)
        o = subprocess.run([instar] + (mine or args), capture_output=True, text=True, cwd=cwd,
                           env=dict(os.environ, INSTAR_QEMU_VERSION=ver))
        want = (q.returncode, norm(q.stderr, d, instar))
        got = (o.returncode, norm(o.stderr, d, instar))
        results.append((f'{label} [qemu {ver}]', [] if want == got else [f'qemu {want!r}, instar {got!r}']))


def main():
    args, status = start(__doc__, 1)
    if args is None:
        return status
    instar = args[0]
    results = []
    with tempfile.TemporaryDirectory() as d:
        qemu72 = QEMUS['7.2'][0]
        luks = os.path.join(d, 'good.luks')
        run_fixture([qemu72, 'create', '-q', '--object', SECRET, '-f', 'luks', '-o',
                     'key-secret=sec0,iter-time=10', luks, '1M'], check=True)
        enc = os.path.join(d, 'good.qcow2')
        run_fixture([qemu72, 'create', '-q', '--object', SECRET, '-f', 'qcow2', '-o',
                     'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10', enc, '1M'], check=True)
        plain = bytes(open(luks, 'rb').read())
        qcow2 = bytes(open(enc, 'rb').read())
        at = qcow2.find(b'LUKS\xba\xbe')
        assert at > 0, 'no LUKS header in the encrypted qcow2'
        for label, change in CASES:
            b = bytearray(plain)
            change(b)
            with open(os.path.join(d, f'{label}.luks'), 'wb') as f:
                f.write(b)
            img = f'{label}.luks'
            opts = f'driver=luks,key-secret=sec0,file.filename={img}'
            compare(results, f'info -f luks {label}', ['info', '-f', 'luks', img], d, instar, d)
            # Probed: a header qemu's probe rejects (magic, version) is raw to qemu, which instar
            # never guesses unless asked (--unsafe-quirks: qemu's fallback).
            compare(results, f'info {label} (probed)', ['info', img], d, instar, d, ['info', '--unsafe-quirks', img])
            compare(results, f'map -f luks {label} (no key)', ['map', '-f', 'luks', img], d, instar, d)
            compare(results, f'convert {label} (key)',
                    ['convert', '--object', SECRET, '--image-opts', opts, '-O', 'raw', 'out.raw'], d, instar, d)
            if label in ('magic', 'stripes', 'version2', 'cipher', 'payload-zero'):
                # Inside qcow2: the header at the crypto header extension (never detached).
                q = bytearray(qcow2)
                h = q[at:at + 592]
                change(h)
                q[at:at + 592] = h
                with open(os.path.join(d, f'{label}.qcow2'), 'wb') as f:
                    f.write(q)
                compare(results, f'info qcow2 {label}', ['info', f'{label}.qcow2'], d, instar, d)
                compare(results, f'check qcow2 {label} (no key)', ['check', f'{label}.qcow2'], d, instar, d)
                compare(results, f'create -b {label}.luks',
                        ['create', '-f', 'qcow2', '-b', img, '-F', 'luks', 'overlay.qcow2'], d, instar, d)
        # A file that is not LUKS, forced to luks: every command that opens it for I/O asks for the
        # key-secret first; info (no I/O) reads the header.
        with open(os.path.join(d, 'plain.img'), 'wb') as f:
            f.write(b'not a LUKS volume' * 4096)
        p = 'plain.img'
        for args in (['info', '-f', 'luks', p], ['convert', '-f', 'luks', p, 'out.raw'], ['map', '-f', 'luks', p],
                     ['check', '-f', 'luks', p], ['measure', '-O', 'raw', '-f', 'luks', p],
                     ['compare', '-f', 'luks', '-F', 'raw', p, p], ['dd', '-f', 'luks', f'if={p}', 'of=out.raw'],
                     ['resize', '-f', 'luks', p, '2M'], ['amend', '-f', 'luks', '-o', 'foo=bar', p],
                     ['rebase', '-u', '-b', '', '-f', 'luks', p], ['commit', '-f', 'luks', p],
                     ['bitmap', '--add', '-f', 'luks', p, 'b'],
                     ['convert', '--object', SECRET, '--image-opts', f'driver=luks,key-secret=sec0,file.filename={p}',
                      'out.raw']):
            compare(results, ' '.join(args), args, d, instar, d)
        # A key named but never defined: qemu looks it up before reading the header, so a damaged
        # header (or none) is "No secret with id" in every command that opens the image for I/O.
        nosuch = f'driver=luks,key-secret=nosuch,file.filename={p}'
        for cmd, *rest in (['resize', '--image-opts', nosuch, '2M'],
                           ['amend', '--image-opts', '-o', 'iter-time=10', nosuch],
                           ['rebase', '-u', '-b', '', '--image-opts', nosuch], ['snapshot', '-l', '--image-opts', nosuch],
                           ['bitmap', '--add', '--image-opts', nosuch, 'b'], ['check', '--image-opts', nosuch],
                           ['convert', '--image-opts', nosuch, 'out.raw']):
            args = [cmd, '--object', SECRET] + rest
            compare(results, ' '.join(args) + ' (undefined key)', args, d, instar, d)
        # A luks backing file: convert, map and compare open the chain as one node for I/O and name
        # no key for it, so qemu asks for the backing's key before reading its header, in the top's
        # frame ("Could not open 'OV': Could not open backing file: ..."); info reads the header.
        for base in ('good.luks', 'stripes.luks', 'magic.luks'):
            ov = f'ov-{base}.qcow2'
            run_fixture([qemu72, 'create', '-q', '-f', 'qcow2', '-b', base, '-F', 'luks', '-u', ov, '1M'],
                        check=True, cwd=d)
            for args in (['convert', ov, 'out.raw'], ['map', ov], ['compare', ov, ov],
                         ['info', '--backing-chain', ov]):
                compare(results, ' '.join(args) + ' (luks backing)', args, d, instar, d)
            # The commands that open the chain as one node for I/O ask for the key of a level
            # that names none, damaged header or not (all fail here: nothing is written); with
            # backing.key-secret the header is read (commit and rebase only for the damaged ones,
            # which fail before writing).
            keyed = f'driver=qcow2,file.filename={ov},backing.key-secret=sec0'
            for args in (['check', ov], ['commit', ov], ['rebase', '-b', '', ov], ['snapshot', '-l', ov],
                         ['resize', ov, '2M'], ['amend', '-o', 'lazy_refcounts=on', ov],
                         ['check', '--object', SECRET, '--image-opts', keyed]) + (
                             () if base == 'good.luks' else
                             (['commit', '--object', SECRET, '--image-opts', keyed],
                              ['rebase', '--object', SECRET, '-b', '', '--image-opts', keyed])):
                compare(results, ' '.join(args) + ' (luks backing)', args, d, instar, d)
            # snapshot, resize and amend take backing keys too (qemu unlocks each level as it
            # opens it): a wrong one, one never defined (looked up before the header), and one
            # only qcow2 reads (luks asks for its own).
            for opt, obj in ((',backing.key-secret=sec0', 'secret,id=sec0,data=wrong'),
                             (',backing.key-secret=nosuch', SECRET),
                             (',backing.encrypt.key-secret=sec0', SECRET)):
                o = f'driver=qcow2,file.filename={ov}' + opt
                for args in (['snapshot', '-l', '--object', obj, '--image-opts', o],
                             ['resize', '--object', obj, '--image-opts', o, '2M'],
                             ['amend', '--object', obj, '-o', 'lazy_refcounts=on', '--image-opts', o],
                             ['check', '--object', obj, '--image-opts', o]):
                    compare(results, ' '.join(args) + ' (luks backing)', args, d, instar, d)
        compare(results, 'snapshot -l, backing key (luks backing)',
                ['snapshot', '-l', '--object', SECRET, '--image-opts',
                 'driver=qcow2,file.filename=ov-good.luks.qcow2,backing.key-secret=sec0'], d, instar, d)
        # An encrypted overlay given a wrong key over a luks backing naming none: qemu unlocks the
        # top's key as it opens it, before the backing file, so the top's error comes first.
        run_fixture([qemu72, 'create', '-q', '--object', SECRET, '-f', 'qcow2', '-o',
                     'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10', '-b', 'good.luks',
                     '-F', 'luks', '-u', 'enc-ov.qcow2', '1M'], check=True, cwd=d)
        wrong = 'secret,id=sec0,data=wrong'
        enc = 'driver=qcow2,file.filename=enc-ov.qcow2,encrypt.key-secret=sec0'
        for cmd, *rest in (['check'], ['commit'], ['rebase', '-b', ''], ['snapshot', '-l'],
                           ['amend', '-o', 'lazy_refcounts=on'], ['check', 'backing.key-secret=sec0'],
                           ['commit', 'backing.key-secret=sec0'], ['resize', '2M']):
            opts = enc + ''.join(',' + r for r in rest if r.startswith('backing.'))
            tail = [r for r in rest if not r.startswith('backing.') and r != '2M']
            args = [cmd, '--object', wrong] + tail + ['--image-opts', opts] + (['2M'] if '2M' in rest else [])
            compare(results, ' '.join(args) + ' (wrong top key, luks backing)', args, d, instar, d)
        # Any backing image that fails to open (here a qcow2 of version 7) is reported in the top's
        # frame by every command that opens the chain: qemu opens it as one node.
        with open(os.path.join(d, 'v7.qcow2'), 'wb') as f:
            f.write(qcow2[:4] + b'\0\0\0\7' + qcow2[8:])
        run_fixture([qemu72, 'create', '-q', '-f', 'qcow2', '-b', 'v7.qcow2', '-F', 'qcow2', '-u', 'ov-v7.qcow2',
                     '1M'], check=True, cwd=d)
        for args in (['convert', 'ov-v7.qcow2', 'out.raw'], ['map', 'ov-v7.qcow2'], ['check', 'ov-v7.qcow2'],
                     ['compare', 'ov-v7.qcow2', 'ov-v7.qcow2'], ['measure', '-O', 'qcow2', 'ov-v7.qcow2'],
                     ['commit', 'ov-v7.qcow2'], ['resize', 'ov-v7.qcow2', '2M'], ['rebase', '-u', '-b', '', 'ov-v7.qcow2'],
                     ['snapshot', '-l', 'ov-v7.qcow2'], ['dd', 'if=ov-v7.qcow2', 'of=out.raw']):
            compare(results, ' '.join(args) + ' (backing fails to open)', args, d, instar, d)
        compare(results, 'snapshot -l damaged (probed)', ['snapshot', '-l', 'stripes.luks'], d, instar, d)
        # convert -l: luks has no snapshots to load (after the key, as qemu's open then load_tmp).
        compare(results, 'convert -l on luks', ['convert', '--object', SECRET, '--image-opts',
                                                 'driver=luks,key-secret=sec0,file.filename=good.luks', '-l', 's1',
                                                 'out.raw'], d, instar, d)
        # ... and a wrong key is the open's error, framed as one, before any snapshot is looked at.
        compare(results, 'convert -l on luks, wrong key', ['convert', '--object', 'secret,id=bad,data=wrong',
                                                           '--image-opts',
                                                           'driver=luks,key-secret=bad,file.filename=good.luks',
                                                           '-l', 's1', 'out.raw'], d, instar, d)
    return report(results)


if __name__ == '__main__':
    sys.exit(main())
