"""LUKS2 creation (an instar extension, `-o luks-version=2`; docs/formats/luks.md, "Creating LUKS2"),
checked against cryptsetup and openssl rather than against instar's own reader alone: create and
convert -O luks make volumes that `cryptsetup luksDump` describes as cryptsetup lays them out and
`cryptsetup open --test-passphrase` unlocks; the payload of a cbc-plain64 volume decrypts with
openssl under the volume key cryptsetup recovers from the key slot; instar reads every volume back
in both sandboxes (xts, cbc-essiv, a size that is not whole sectors). qemu-img's words stay its own:
`-o help` is byte-identical to both oracles', the Formatting line adds the key only when given, and
the refusals (a version other than 1 or 2, ecb, the key on qcow2) leave no file. measure -O luks
gives the volume's size; `instar formats` and bash completion name the key.

usage: luks2_create.py INSTAR"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'formats'))
from differential_support import QEMUS, report, start  # noqa: E402

CRYPTSETUP = shutil.which('cryptsetup') or '/usr/sbin/cryptsetup'
OPENSSL = shutil.which('openssl') or '/usr/bin/openssl'
PASS = 'instar-luks2-create'
SECRET = f'secret,id=sec0,data={PASS}'
SEGMENT = 16 << 20
PLAIN_SIZE = (1 << 20) + 1000  # not whole sectors: the volume rounds up to 1 MiB + 1024


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, **kw)


def main():
    args, status = start(__doc__, 1, required=(CRYPTSETUP, OPENSSL), sandboxed=True)
    if args is None:
        return status
    instar = os.path.abspath(args[0])
    results = []

    def check(label, ok, detail=''):
        results.append((label, [] if ok else [detail or 'failed']))

    sandboxes = (['--sandbox', 'kvm'] if os.path.exists('/dev/kvm') else []), ['--sandbox', 'process']
    with tempfile.TemporaryDirectory() as d:
        key = os.path.join(d, 'key')
        with open(key, 'w') as f:
            f.write(PASS)
        plain = os.urandom(PLAIN_SIZE)
        src = os.path.join(d, 'plain.raw')
        with open(src, 'wb') as f:
            f.write(plain)
        expected = plain + bytes(-PLAIN_SIZE % 512)

        # create: the Formatting line is qemu-img's plus the key given; the file is header + disk.
        vol = os.path.join(d, 'new.luks')
        o = run([instar, 'create', '-f', 'luks', '--object', SECRET, '-o',
                 'key-secret=sec0,iter-time=10,luks-version=2', vol, '64M'], cwd=d)
        check('create', o.returncode == 0 and o.stdout == f"Formatting '{vol}', fmt=luks size=67108864 "
              "key-secret=sec0 iter-time=10 luks-version=2\n", o.stdout + o.stderr)
        check('create size', os.path.getsize(vol) == SEGMENT + (64 << 20), str(os.path.getsize(vol)))
        dump = run([CRYPTSETUP, 'luksDump', '--dump-json-metadata', vol])
        meta = json.loads(dump.stdout) if dump.returncode == 0 else {}
        seg = meta.get('segments', {}).get('0', {})
        slot = meta.get('keyslots', {}).get('0', {})
        check('cryptsetup reads the metadata',
              seg.get('offset') == str(SEGMENT) and seg.get('size') == 'dynamic' and
              seg.get('encryption') == 'aes-xts-plain64' and seg.get('sector_size') == 512 and
              slot.get('kdf', {}).get('type') == 'pbkdf2' and slot.get('area', {}).get('offset') == '32768' and
              meta.get('config', {}).get('keyslots_size') == str(SEGMENT - 32768), dump.stdout + dump.stderr)
        head = run([CRYPTSETUP, 'luksDump', vol]).stdout
        check('cryptsetup sees LUKS2', 'Version:       \t2' in head, head[:200])
        o = run([CRYPTSETUP, 'open', '--test-passphrase', '--key-file', key, vol])
        check('cryptsetup unlocks it', o.returncode == 0, o.stderr)
        with open(os.path.join(d, 'wrong'), 'w') as f:
            f.write('wrong')
        o = run([CRYPTSETUP, 'open', '--test-passphrase', '--key-file', os.path.join(d, 'wrong'), vol])
        check('cryptsetup refuses a wrong passphrase', o.returncode != 0, o.stdout)
        o = run([instar, 'info', '--output=json', '--object', SECRET, '--image-opts',
                 f'driver=luks,key-secret=sec0,file.filename={vol}'])
        info = json.loads(o.stdout) if o.returncode == 0 else {}
        check('instar info', info.get('format') == 'luks' and info.get('virtual-size') == 64 << 20 and
              info.get('encrypted') is True, o.stdout + o.stderr)

        # convert -O luks: xts (the default) and cbc-essiv read back in each sandbox; cbc-plain64
        # decrypted by openssl with the volume key cryptsetup takes out of the key slot.
        for name, extra in (('xts', ''), ('cbc-essiv', ',cipher-alg=aes-128,cipher-mode=cbc,ivgen-alg=essiv'),
                            ('cbc-plain64', ',cipher-alg=aes-256,cipher-mode=cbc,ivgen-alg=plain64')):
            for sandbox in sandboxes:
                label = f'convert {name} {" ".join(sandbox)}'
                out = os.path.join(d, f'{name}.luks')
                back = os.path.join(d, 'back.raw')
                for p in (out, back):
                    if os.path.exists(p):
                        os.unlink(p)
                o = run([instar] + sandbox + ['convert', '-f', 'raw', '-O', 'luks', '--object', SECRET, '-o',
                                              f'key-secret=sec0,iter-time=10,luks-version=2{extra}', src, out])
                if o.returncode != 0:
                    check(label, False, o.stderr)
                    continue
                check(f'{label}: size', os.path.getsize(out) == SEGMENT + len(expected), str(os.path.getsize(out)))
                o = run([instar] + sandbox + ['convert', '--object', SECRET, '--image-opts',
                                              f'driver=luks,key-secret=sec0,file.filename={out}', '-O', 'raw', back])
                with open(back, 'rb') if o.returncode == 0 else open(os.devnull, 'rb') as f:
                    got = f.read()
                check(f'{label}: read back', got == expected, o.stderr or f'{len(got)} bytes differ')
                o = run([CRYPTSETUP, 'open', '--test-passphrase', '--key-file', key, out])
                check(f'{label}: cryptsetup unlocks it', o.returncode == 0, o.stderr)
            if name != 'cbc-plain64':
                continue
            o = run([CRYPTSETUP, 'luksDump', '-q', '--dump-volume-key', '--key-file', key, out])
            hexkey = ''.join(o.stdout.split('MK dump:', 1)[-1].split()) if 'MK dump:' in o.stdout else ''
            check('cryptsetup recovers the volume key', len(hexkey) == 64, o.stdout + o.stderr)
            with open(out, 'rb') as f:
                data = f.read()
            for sector in (0, 7, len(expected) // 512 - 1):
                iv = sector.to_bytes(16, 'little').hex()
                ct = data[SEGMENT + sector * 512:SEGMENT + sector * 512 + 512]
                o = subprocess.run([OPENSSL, 'enc', '-d', '-aes-256-cbc', '-nopad', '-K', hexkey, '-iv', iv],
                                   input=ct, capture_output=True)
                check(f'openssl decrypts sector {sector}', o.stdout == expected[sector * 512:sector * 512 + 512],
                      o.stderr.decode())

        # qemu-img's own texts are untouched: -o help, as both oracles print it.
        for ver, (qemu_img, _) in QEMUS.items():
            mine = run([instar, '--qemu-version', f'{ver}.0', 'create', '-f', 'luks', '-o', 'help'])
            theirs = run([qemu_img, 'create', '-f', 'luks', '-o', 'help'])
            check(f'-o help as qemu-img {ver}', mine.stdout == theirs.stdout and 'luks-version' not in mine.stdout,
                  mine.stdout)

        # Refusals leave no file.
        for label, opts, text in (
                ('version 3', 'luks-version=3', "Parameter 'luks-version' does not accept value '3'"),
                ('ecb', 'luks-version=2,cipher-mode=ecb',
                 "instar does not create LUKS2 volumes in ecb mode: dm-crypt's ecb takes no IV generator")):
            bad = os.path.join(d, 'bad.luks')
            o = run([instar, 'create', '-f', 'luks', '--object', SECRET, '-o', f'key-secret=sec0,iter-time=10,{opts}',
                     bad, '1M'])
            check(f'refused: {label}', o.returncode == 1 and o.stderr == f'instar: {bad}: {text}\n' and
                  not os.path.exists(bad), o.stderr)
        bad = os.path.join(d, 'bad.qcow2')
        o = run([instar, 'create', '-f', 'qcow2', '-o', 'luks-version=2', bad, '1M'])
        check('refused: qcow2 has no such key', o.returncode == 1 and
              o.stderr.startswith(f"instar: {bad}: Invalid parameter 'luks-version'") and not os.path.exists(bad),
              o.stderr)

        # measure: the 16 MiB header and the disk in whole sectors; LUKS1 unchanged.
        o = run([instar, 'measure', '-O', 'luks', '--object', SECRET, '-o', 'key-secret=sec0,luks-version=2',
                 '--size', str(PLAIN_SIZE), '--output=json'])
        m = json.loads(o.stdout) if o.returncode == 0 else {}
        check('measure', m.get('required') == SEGMENT + len(expected) == m.get('fully-allocated'), o.stdout + o.stderr)

        # `instar formats` says what the key is, and bash completion offers it after -o.
        o = run([instar, 'formats', '--output=json'])
        text = o.stdout
        check('formats lists the extension', '"luks-version"' in text and '"extension"' in text, text[:200])
        completion = os.path.join(os.path.dirname(__file__), '..', '..', 'tools', 'completion', 'instar.bash')
        if os.path.exists('/usr/share/bash-completion/bash_completion'):
            script = ('source /usr/share/bash-completion/bash_completion 2>/dev/null; source "$1"; '
                      'COMP_WORDS=(instar create -f luks -o luks-v); COMP_LINE="${COMP_WORDS[*]}"; '
                      'COMP_POINT=${#COMP_LINE}; COMP_CWORD=5; _instar; echo "${COMPREPLY[*]}"')
            env = dict(os.environ, PATH=os.path.dirname(instar) + os.pathsep + os.environ.get('PATH', ''))
            o = run(['bash', '-c', script, 'bash', completion], env=env)
            check('bash completion offers luks-version', o.stdout.strip() == 'luks-version=', o.stdout + o.stderr)
    return report(results)


if __name__ == '__main__':
    sys.exit(main())
