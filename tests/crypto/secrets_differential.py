#!/usr/bin/env python3
"""--object secret for every command that opens an image, against both qemu-img oracles: a luks image,
an encrypted qcow2 (encrypt.format=luks) and one with the old AES method (encrypt.format=aes: any key
opens it, so "wrong" reads other bytes), each command with the secret given (--image-opts and
json:), with a wrong passphrase, with the key-secret option missing, and with a plain file name;
exit status, stdout, stderr and the image's bytes afterwards compared (docs/architecture.md,
"Secrets").

usage: secrets_differential.py INSTAR"""
import json
import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'formats'))
from differential_support import start, report  # noqa: E402
from oracle_diff import OracleDiff  # noqa: E402
from oracle_retry import run_fixture  # noqa: E402

PASS = 'secrets-pass'
FORMATS = {
    'luks': ('x.luks', 'key-secret', ['-f', 'luks', '-o', 'key-secret=s0,iter-time=10']),
    'qcow2': ('x.qcow2', 'encrypt.key-secret',
              ['-f', 'qcow2', '-o', 'encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10']),
    'aes': ('x-aes.qcow2', 'encrypt.key-secret', ['-f', 'qcow2', '-o', 'encrypt.format=aes,encrypt.key-secret=s0']),
}
# The block driver of each FORMATS entry (the name when not listed).
DRIVER = {'aes': 'qcow2'}
# Divergences documented in docs/quirks.md (secrets-*): (command, format, mode) not compared.
NOT_COMPARED = set()


def names(fmt, mode, d):
    """The image argument(s) for `mode`: given / wrong (--image-opts naming s0), json (json: naming
    s0), missing (--image-opts without the key-secret option), plain (the file name)."""
    img, key, _ = FORMATS[fmt]
    if mode == 'plain':
        return [], '@' + img
    obj = ['--object', f'secret,id=s0,data={"wrong-pass" if mode == "wrong" else PASS}']
    if mode == 'json':
        return obj, 'json:' + json.dumps({'driver': DRIVER.get(fmt, fmt), key: 's0', 'file': {'driver': 'file', 'filename': '@' + img}})
    opts = f'driver={DRIVER.get(fmt, fmt)},' + ('' if mode == 'missing' else f'{key}=s0,') + f'file.filename=@{img}'
    return (obj if mode != 'missing' else []) + ['--image-opts'], opts


def commands(pre, name):
    """(command, argv) for one image argument; `pre` are the --object / --image-opts options."""
    image_opts = '--image-opts' in pre
    obj = [a for a in pre if a != '--image-opts']
    io = ['--image-opts'] if image_opts else []
    return [
        ('info', ['info'] + obj + io + [name]),
        ('map', ['map'] + obj + io + [name]),
        ('map-json', ['map', '--output=json'] + obj + io + [name]),
        ('measure', ['measure', '-O', 'qcow2'] + obj + io + [name]),
        ('check', ['check'] + obj + io + [name]),
        ('snapshot-l', ['snapshot', '-l'] + obj + io + [name]),
        ('snapshot-c', ['snapshot', '-c', 'sn1'] + obj + io + [name]),
        ('bitmap', ['bitmap', '--add'] + obj + io + [name, 'b0']),
        ('resize', ['resize'] + obj + io + [name, '2M']),
        ('amend', ['amend', '-o', 'lazy_refcounts=on'] + obj + io + [name]),
        ('dd', ['dd', '-O', 'raw'] + obj + io + ['if=' + name, 'of=@dd.raw']),
        ('convert', ['convert', '-O', 'raw'] + obj + io + [name, '@out.raw']),
        ('compare', ['compare'] + obj + io + [name, name]),
    ]


def block_names_only(problems):
    """qemu names an --image-opts node "#blockNNN" from a counter that varies from run to run
    (instar too): a stderr that differs only there is the same."""
    kept = []
    for p in problems:
        if p.startswith('stderr differs:'):
            q, _, i = p[len('stderr differs:\n--- qemu\n'):].partition('--- instar\n')
            if re.sub(r'#block\d+', '#blockN', q) == re.sub(r'#block\d+', '#blockN', i):
                continue
        kept.append(p)
    return kept


def date_only(work, img):
    """True when qemu's and instar's copies of `img` differ in at most one 8-byte window: a new
    snapshot's date (seconds and nanoseconds, QCowSnapshotHeader.date_sec/date_nsec)."""
    a = open(os.path.join(work, 'Qx_' + img), 'rb').read()
    b = open(os.path.join(work, 'Ix_' + img), 'rb').read()
    if len(a) != len(b):
        return False
    diff = [k for k in range(len(a)) if a[k] != b[k]]
    return not diff or diff[-1] - diff[0] < 8


def rebase_cases(d, work, qemu, qemu_io):
    """rebase with an encrypted image in the chain: the overlay (rtop, over rbase), the old backing
    file (ebase, under ptop) and the new one (-b json:{...} naming ebase), each with the secret given,
    wrong, missing and not named; -u and safe mode. Safe mode's copy into the encrypted overlay is
    compared on content (qemu-img compare with the secret) and qemu-img check: the clusters may sit
    elsewhere than qemu's (docs/rebase.md); everything else byte for byte."""
    obj = ['--object', f'secret,id=s0,data={PASS}']
    wrong = ['--object', 'secret,id=s0,data=wrong-pass']
    enc = 'encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10'
    for img, pattern in (('rbase.qcow2', '0x11'), ('rnew.qcow2', '0x22')):
        d.fixture(qemu, 'create', '-q', '-f', 'qcow2', img, '1M')
        d.fixture(qemu_io, '-f', 'qcow2', img, '-c', f'write -P {pattern} 0 512k')
    d.fixture(qemu, 'create', '-q', *obj, '-f', 'qcow2', '-o', enc + ',backing_file=rbase.qcow2,backing_fmt=qcow2',
              'rtop.qcow2')
    d.fixture(qemu, 'create', '-q', *obj, '-f', 'qcow2', '-o', enc, 'ebase.qcow2', '1M')
    for img in ('rtop.qcow2', 'ebase.qcow2'):
        d.fixture(qemu_io, *obj, '--image-opts', f'driver=qcow2,encrypt.key-secret=s0,file.filename={img}',
                  '-c', 'write -P 0x33 65536 65536')
    d.fixture(qemu, 'create', '-q', '-f', 'qcow2', '-o', 'backing_file=ebase.qcow2,backing_fmt=qcow2', 'ptop.qcow2')
    new_abs = os.path.join(work, 'rnew.qcow2')
    top = 'driver=qcow2,encrypt.key-secret=s0,file.filename=@rtop.qcow2'
    top_json = 'json:' + json.dumps({'driver': 'qcow2', 'encrypt.key-secret': 's0',
                                     'file': {'driver': 'file', 'filename': '@rtop.qcow2'}})
    ptop = 'driver=qcow2,backing.encrypt.key-secret=s0,file.filename=@ptop.qcow2'
    eb_json = 'json:' + json.dumps({'driver': 'qcow2', 'encrypt.key-secret': 's0',
                                    'file': {'driver': 'file', 'filename': 'ebase.qcow2'}})
    exact = [
        # the encrypted overlay, -u
        ('rebase -u top given', obj + ['-u', '-b', 'rnew.qcow2', '-F', 'qcow2', '--image-opts', top], 'rtop.qcow2'),
        ('rebase -u top json', obj + ['-u', '-b', 'rnew.qcow2', '-F', 'qcow2', top_json], 'rtop.qcow2'),
        ('rebase -u top detach', obj + ['-u', '-b', '', '--image-opts', top], 'rtop.qcow2'),
        ('rebase -u top wrong', wrong + ['-u', '-b', 'rnew.qcow2', '-F', 'qcow2', '--image-opts', top], 'rtop.qcow2'),
        ('rebase -u top missing', ['-u', '-b', 'rnew.qcow2', '-F', 'qcow2', '--image-opts', top], 'rtop.qcow2'),
        ('rebase -u top plain', obj + ['-u', '-b', 'rnew.qcow2', '-F', 'qcow2', '@rtop.qcow2'], 'rtop.qcow2'),
        # the encrypted overlay, safe mode: refusals
        ('rebase top relative', obj + ['-p', '-b', 'rnew.qcow2', '-F', 'qcow2', '--image-opts', top], 'rtop.qcow2'),
        ('rebase top wrong', wrong + ['-b', new_abs, '-F', 'qcow2', '--image-opts', top], 'rtop.qcow2'),
        ('rebase top plain', obj + ['-b', new_abs, '-F', 'qcow2', '@rtop.qcow2'], 'rtop.qcow2'),
        # the encrypted old backing file
        ('rebase old given', obj + ['-b', new_abs, '-F', 'qcow2', '--image-opts', ptop], 'ptop.qcow2'),
        ('rebase old relative', obj + ['-b', 'rnew.qcow2', '-F', 'qcow2', '--image-opts', ptop], 'ptop.qcow2'),
        ('rebase old wrong', wrong + ['-b', new_abs, '-F', 'qcow2', '--image-opts', ptop], 'ptop.qcow2'),
        ('rebase old missing', ['-b', new_abs, '-F', 'qcow2', '--image-opts', ptop], 'ptop.qcow2'),
        ('rebase old plain', ['-b', 'rnew.qcow2', '-F', 'qcow2', '@ptop.qcow2'], 'ptop.qcow2'),
        ('rebase -u old plain', ['-u', '-b', 'rnew.qcow2', '-F', 'qcow2', '@ptop.qcow2'], 'ptop.qcow2'),
        # the encrypted new backing file (ebase under a plain copy of rnew)
        ('rebase new json', obj + ['-b', eb_json, '-F', 'qcow2', '@rnew.qcow2'], 'rnew.qcow2'),
        ('rebase new json wrong', wrong + ['-b', eb_json, '-F', 'qcow2', '@rnew.qcow2'], 'rnew.qcow2'),
        ('rebase new json missing', ['-b', eb_json, '-F', 'qcow2', '@rnew.qcow2'], 'rnew.qcow2'),
        ('rebase new plain', obj + ['-b', 'ebase.qcow2', '-F', 'qcow2', '@rnew.qcow2'], 'rnew.qcow2'),
    ]
    for label, argv, img in exact:
        d.same(label, ['rebase'] + argv, inputs=[img])
    # safe mode into the encrypted overlay: the same messages, then content and check
    for ver in ('7.2', '10.0'):
        d.same('rebase top given', ['rebase'] + obj + ['-b', new_abs, '-F', 'qcow2', '--image-opts', top],
               inputs=['rtop.qcow2'], versions=[ver])
        label, problems = d.results[-1]
        problems = [p for p in problems if p != 'rtop.qcow2: bytes differ']
        opts = lambda tag: f'driver=qcow2,encrypt.key-secret=s0,file.filename={tag}rtop.qcow2'
        for tag in ('Qx_', 'Ix_'):
            p = run_fixture([qemu, 'check'] + obj + ['--image-opts', opts(tag)], cwd=work)
            if p.returncode != 0:
                problems.append(f'{tag}rtop.qcow2: qemu-img check: {p.stdout}{p.stderr}')
        p = run_fixture([qemu, 'compare'] + obj + ['--image-opts', opts('Qx_'), opts('Ix_')], cwd=work)
        if p.returncode != 0:
            problems.append(f'content differs from qemu-img\'s: {p.stdout}{p.stderr}')
        p = run_fixture([qemu, 'info', '--output=json', d.path('Ix_rtop.qcow2')], cwd=work)
        if json.loads(p.stdout).get('backing-filename') != new_abs:
            problems.append('backing file not switched')
        d.results[-1] = (label, problems)


def commit_base_cases(d, work, qemu, qemu_io):
    """commit into an encrypted base: a LUKS qcow2 base under a plain top (one smaller than the top,
    so it grows first), a legacy AES qcow2 base, a raw luks base, an encrypted top over an encrypted base (its own secret),
    and a three-deep chain (-b to the encrypted base, and the plain middle image as the base over it).
    The secrets by json: and --image-opts (backing.encrypt.key-secret / backing.key-secret), wrong,
    missing, a secret id that does not exist, the key option of the other format; with and without
    -d. Messages, exit status and the top's bytes compared; the base on content (qemu-img compare
    with the secret: clusters may sit elsewhere than qemu's, docs/commit.md) and qemu-img check."""
    obj = ['--object', f'secret,id=s0,data={PASS}', '--object', 'secret,id=s1,data=top-pass']
    wrong = ['--object', 'secret,id=s0,data=wrong-pass', '--object', 'secret,id=s1,data=top-pass']
    qenc = lambda sid: f'encrypt.format=luks,encrypt.key-secret={sid},encrypt.iter-time=10'
    chains = {}  # directory: (files, base file, base format, base key option, write options for the top)

    def top_writes(directory, top, opts):
        d.fixture(qemu_io, *obj, '--image-opts', f'driver=qcow2,file.filename={directory}/{top}{opts}',
                  '-c', 'write -P 0xab 4096 65536', '-c', 'write -P 0xcd 700k 5000', '-c', 'write -z 256k 64k')

    for directory, base_fmt, base_size, top_size in (('cq', 'qcow2', '1M', '1M'), ('cg', 'qcow2', '1M', '2M'),
                                                     ('ca', 'qcow2', '1M', '1M'), ('cl', 'luks', '1M', '1M'),
                                                     ('ce', 'qcow2', '1M', '1M'), ('c3', 'qcow2', '1M', '1M')):
        for tag in ('', 'Qx_', 'Ix_'):
            os.makedirs(d.path(tag + directory), exist_ok=True)
        base = f'{directory}/b.{base_fmt}'
        key = 'encrypt.key-secret' if base_fmt == 'qcow2' else 'key-secret'
        create = ['-o', qenc('s0')] if base_fmt == 'qcow2' else ['-o', 'key-secret=s0,iter-time=10']
        if directory == 'ca':
            create = ['-o', 'encrypt.format=aes,encrypt.key-secret=s0']
        d.fixture(qemu, 'create', '-q', *obj, '-f', base_fmt, *create, base, base_size)
        d.fixture(qemu_io, *obj, '--image-opts', f'driver={base_fmt},{key}=s0,file.filename={base}',
                  '-c', 'write -P 0x11 0 1M')
        files = [base]
        below = f'b.{base_fmt}'
        if directory == 'c3':
            d.fixture(qemu, 'create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', '-b', below, '-F', base_fmt,
                      f'{directory}/m.qcow2', top_size)
            d.fixture(qemu_io, *obj, '--image-opts',
                      f'driver=qcow2,file.filename={directory}/m.qcow2,backing.{key}=s0',
                      '-c', 'write -P 0x22 8192 8192')
            files.append(f'{directory}/m.qcow2')
            below = 'm.qcow2'
        top_enc = ['-o', qenc('s1')] if directory == 'ce' else []
        d.fixture(qemu, 'create', '-q', *obj, '-f', 'qcow2', *top_enc, '-o', 'cluster_size=4096', '-b', below,
                  '-F', 'qcow2' if directory == 'c3' else base_fmt, f'{directory}/t.qcow2', top_size)
        own = ',encrypt.key-secret=s1' if directory == 'ce' else ''
        levels = 'backing.backing.' if directory == 'c3' else 'backing.'
        top_writes(directory, 't.qcow2', own + f',{levels}{key}=s0')
        files.append(f'{directory}/t.qcow2')
        chains[directory] = (files, base, base_fmt, key, own, levels)

    def json_name(directory, extra):
        return 'json:' + json.dumps(dict({'file.filename': f'@{directory}/t.qcow2'}, **extra))

    cases = []
    for directory, (files, base, base_fmt, key, own, levels) in chains.items():
        top_key = {'encrypt.key-secret': 's1'} if own else {}
        given = json_name(directory, dict(top_key, **{levels + key: 's0'}))
        opts = f'driver=qcow2,file.filename=@{directory}/t.qcow2{own},{levels}{key}=s0'
        cases += [
            (f'{directory} json', obj + [given]),
            (f'{directory} json -d', obj + ['-d', given]),
            (f'{directory} image-opts', obj + ['--image-opts', opts]),
            (f'{directory} wrong', wrong + [given]),
            (f'{directory} missing', obj + [json_name(directory, top_key)]),
            (f'{directory} no such secret', obj + [json_name(directory, dict(top_key, **{levels + key: 's9'}))]),
        ]
        other = 'key-secret' if key == 'encrypt.key-secret' else 'encrypt.key-secret'
        if directory in ('cq', 'cl'):
            cases.append((f'{directory} other key', obj + [json_name(directory, {levels + other: 's0'})]))
            cases.append((f'{directory} plain', obj + [f'@{directory}/t.qcow2']))
            cases.append((f'{directory} bad -b wrong', wrong + ['-b', 'nothere.qcow2', given]))
        if directory == 'ce':
            cases.append(('ce top wrong', ['--object', f'secret,id=s0,data={PASS}', '--object',
                                           'secret,id=s1,data=wrong'] + [given]))
            cases.append(('ce top missing', obj + [json_name(directory, {levels + key: 's0'})]))
        if directory == 'c3':
            # qemu compares -b with the json: filename of an image named with options (a plain name
            # finds none of them); the base's, as qemu builds it, finds it
            b_json = 'json:' + json.dumps({'encrypt.key-secret': 's0', 'driver': 'qcow2',
                                           'file': {'driver': 'file', 'filename': '@c3/b.qcow2'}})
            cases.append(('c3 -b plain name', obj + ['-b', 'b.qcow2', given]))
            cases.append(('c3 -b base', obj + ['-b', b_json, given]))
            cases.append(('c3 -b base wrong', wrong + ['-b', b_json, given]))
    for label, argv in cases:
        directory = label.split()[0]
        files, base, base_fmt, key, _, _ = chains[directory]
        # the image written into: the encrypted base, or c3's plain middle image without -b
        into = f'{directory}/m.qcow2' if directory == 'c3' and '-b' not in argv else base
        opts = (lambda tag: f'driver={base_fmt},{key}=s0,file.filename={tag}{base}') if into == base else (
            lambda tag: f'driver=qcow2,backing.{key}=s0,file.filename={tag}{into}')
        for ver in ('7.2', '10.0'):
            d.same(f'commit into encrypted base {label}', ['commit'] + argv, inputs=files, versions=[ver])
            name, problems = d.results[-1]
            # the base on content: qemu-img compare with its secret, and qemu-img check
            problems = [p for p in problems if p != f'{into}: bytes differ']
            for tag in ('Qx_', 'Ix_'):
                p = run_fixture([qemu, 'check'] + obj + ['--image-opts', opts(tag)], cwd=work)
                if p.returncode != 0 and not (base_fmt == 'luks' and p.returncode == 63):
                    problems.append(f'{tag}{into}: qemu-img check: {p.stdout}{p.stderr}')
            p = run_fixture([qemu, 'compare'] + obj + ['--image-opts', opts('Qx_'), opts('Ix_')], cwd=work)
            if p.returncode != 0:
                problems.append(f'base content differs from qemu-img\'s: {p.stdout}{p.stderr}')
            d.results[-1] = (name, problems)


def commit_grown_middle_case(d, work, qemu, qemu_io):
    """commit into an encrypted middle image (LUKS qcow2, 1028 KiB: its end inside a cluster) smaller
    than the top and than its own plain backing file: it grows first with the area past its old end
    zeroed (bdrv_co_truncate's BDRV_REQ_ZERO_WRITE), the head of the cluster holding the old end
    copied from the backing file and written encrypted with the middle image's key. Messages, exit
    status and the top's bytes compared; the middle image on content (qemu-img compare with its
    secret) and qemu-img check."""
    obj = ['--object', f'secret,id=s0,data={PASS}']
    for tag in ('', 'Qx_', 'Ix_'):
        os.makedirs(d.path(tag + 'cm'), exist_ok=True)
    d.fixture(qemu, 'create', '-q', '-f', 'qcow2', 'cm/b.qcow2', '2M')
    d.fixture(qemu_io, '-f', 'qcow2', '-c', 'write -P 0x11 0 2M', 'cm/b.qcow2')
    d.fixture(qemu, 'create', '-q', *obj, '-f', 'qcow2', '-o',
              'encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10', '-b', 'b.qcow2', '-F', 'qcow2',
              'cm/m.qcow2', '1028K')
    d.fixture(qemu, 'create', '-q', '-u', '-f', 'qcow2', '-b', 'm.qcow2', '-F', 'qcow2', 'cm/t.qcow2', '2M')
    d.fixture(qemu_io, *obj, '--image-opts', 'driver=qcow2,file.filename=cm/t.qcow2,backing.encrypt.key-secret=s0',
              '-c', 'write -P 0xab 1536k 64k')
    given = 'json:' + json.dumps({'file.filename': '@cm/t.qcow2', 'backing.encrypt.key-secret': 's0'})
    opts = lambda tag: f'driver=qcow2,encrypt.key-secret=s0,file.filename={tag}cm/m.qcow2'
    for ver in ('7.2', '10.0'):
        d.same('commit into a grown encrypted middle image', ['commit'] + obj + [given],
               inputs=['cm/b.qcow2', 'cm/m.qcow2', 'cm/t.qcow2'], versions=[ver])
        name, problems = d.results[-1]
        problems = [p for p in problems if p != 'cm/m.qcow2: bytes differ']
        for tag in ('Qx_', 'Ix_'):
            p = run_fixture([qemu, 'check'] + obj + ['--image-opts', opts(tag)], cwd=work)
            if p.returncode != 0:
                problems.append(f'{tag}cm/m.qcow2: qemu-img check: {p.stdout}{p.stderr}')
        p = run_fixture([qemu, 'compare'] + obj + ['--image-opts', opts('Qx_'), opts('Ix_')], cwd=work)
        if p.returncode != 0:
            problems.append(f'middle image content differs from qemu-img\'s: {p.stdout}{p.stderr}')
        d.results[-1] = (name, problems)


def check_chain_cases(d, qemu):
    """check of a plain overlay over an encrypted backing image (qcow2 LUKS, raw luks): qemu opens
    the chain with every key, so the backing image's secret (backing.encrypt.key-secret /
    backing.key-secret, by --image-opts and json:) is required, checked, and a wrong one refused."""
    for base, key in (('x.qcow2', 'encrypt.key-secret'), ('x.luks', 'key-secret')):
        fmt = base.split('.')[1]
        top = f'over-{fmt}.qcow2'
        d.fixture(qemu, 'create', '-q', '-f', 'qcow2', '-b', base, '-F', fmt, top)
        for label, secret, opts in (
                ('no secret', PASS, None),
                ('given', PASS, f'backing.{key}=s0'),
                ('wrong', 'not-' + PASS, f'backing.{key}=s0'),
                ('unknown id', PASS, f'backing.{key}=nosuch'),
                ('the other format\'s key', PASS,
                 'backing.' + ('key-secret' if key == 'encrypt.key-secret' else 'encrypt.key-secret') + '=s0')):
            obj = ['--object', f'secret,id=s0,data={secret}']
            names = [('plain', ['@' + top])] if opts is None else [
                ('image-opts', ['--image-opts', f'driver=qcow2,{opts},file.filename=@{top}']),
                ('json', ['json:' + json.dumps({'driver': 'qcow2', opts.split('=')[0]: opts.split('=')[1],
                                                'file': {'driver': 'file', 'filename': '@' + top}})])]
            for how, name in names:
                for extra in ([], ['-r', 'all']):
                    d.same(f'check {" ".join(extra)} over {fmt}: {label} ({how})', ['check', *extra, *obj, *name],
                           inputs=[top])


def main():
    tools, status = start(__doc__, 1, sandboxed=True)
    if tools is None:
        return status
    only = os.environ.get('SECRETS_ONLY', '').split(',') if os.environ.get('SECRETS_ONLY') else None
    work = tempfile.mkdtemp(prefix='instar-secrets-')
    try:
        d = OracleDiff(sys.argv[1], work)
        qemu = '/usr/bin/qemu-img'
        qemu_io = '/usr/bin/qemu-io'
        for fmt, (img, key, create) in FORMATS.items():
            d.fixture(qemu, 'create', '-q', '--object', f'secret,id=s0,data={PASS}', *create, img, '1M')
            # some data, so map, dd, convert and measure see allocated clusters
            d.fixture(qemu_io, '--object', f'secret,id=s0,data={PASS}', '--image-opts',
                      f'driver={DRIVER.get(fmt, fmt)},{key}=s0,file.filename={img}', '-c', 'write -P 0x5a 65536 65536')
        for fmt, (img, _, _) in FORMATS.items():
            for mode in ('given', 'json', 'wrong', 'missing', 'plain'):
                pre, name = names(fmt, mode, work)
                for cmd, argv in commands(pre, name):
                    if only and cmd not in only:
                        continue
                    if (cmd, fmt, mode) in NOT_COMPARED:
                        continue
                    if mode == 'json' and cmd not in ('map', 'check', 'snapshot-l', 'convert'):
                        continue  # json: names reach the same lookup as --image-opts
                    outputs = [o for o in ('dd.raw', 'out.raw') if any(o in a for a in argv)]
                    for ver in ('7.2', '10.0'):
                        d.same(f'{cmd} {fmt} secret {mode}', argv, outputs=outputs, inputs=[img], versions=[ver])
                        label, problems = d.results[-1]
                        problems = block_names_only(problems)
                        if cmd == 'snapshot-c' and f'{img}: bytes differ' in problems and date_only(work, img):
                            problems.remove(f'{img}: bytes differ')
                        d.results[-1] = (label, problems)
        # commit: an encrypted qcow2 top over a plain base; -d keeps the top, without it the top is
        # emptied as qemu empties a LUKS-encrypted qcow2 (every cluster discarded): byte-identical.
        d.fixture(qemu, 'create', '-q', '-f', 'qcow2', 'base.qcow2', '1M')
        d.fixture(qemu, 'create', '-q', '--object', f'secret,id=s0,data={PASS}', '-f', 'qcow2', '-o',
                  'encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10,backing_file=base.qcow2,'
                  'backing_fmt=qcow2', 'top.qcow2')
        d.fixture(qemu_io, '--object', f'secret,id=s0,data={PASS}', '--image-opts',
                  'driver=qcow2,encrypt.key-secret=s0,file.filename=top.qcow2', '-c', 'write -P 0x33 0 65536')
        shutil.copyfile(d.path('base.qcow2'), d.path('base.orig'))
        for mode in ('given', 'wrong', 'missing', 'plain'):
            if only and 'commit' not in only:
                break
            pre, name = names('qcow2', mode, work)
            name = name.replace(FORMATS['qcow2'][0], 'top.qcow2')
            for ver in ('7.2', '10.0'):
                for flags, label in ((['-d'], 'commit -d'), ([], 'commit')):
                    shutil.copyfile(d.path('base.orig'), d.path('base.qcow2'))
                    d.same(f'{label} qcow2 top secret {mode}', ['commit'] + flags + pre + [name],
                           inputs=['top.qcow2'], versions=[ver])
        if not only or 'commit' in only:
            # the base both tools wrote (the top names base.qcow2 for both): each tool alone
            pre, name = names('qcow2', 'given', work)
            name = name.replace('@' + FORMATS['qcow2'][0], 'top.qcow2')
            bases = {}
            for who, exe in (('qemu', [qemu]), ('instar', [d.instar])):
                shutil.copyfile(d.path('base.orig'), d.path('base.qcow2'))
                run_fixture(exe + ['commit', '-d'] + pre + [name], cwd=work, check=True)
                bases[who] = open(d.path('base.qcow2'), 'rb').read()
            d.results.append(('commit -d qcow2 top secret given: base bytes',
                              [] if bases['qemu'] == bases['instar'] else ['base.qcow2: bytes differ']))
        if not only or 'commit-base' in only:
            commit_base_cases(d, work, qemu, qemu_io)
            commit_grown_middle_case(d, work, qemu, qemu_io)
        if not only or 'rebase' in only:
            rebase_cases(d, work, qemu, qemu_io)
        if not only or 'check-chain' in only:
            check_chain_cases(d, qemu)
        return report(d.results)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
