"""One command run by each qemu-img oracle and by instar, compared: the shared runner of the format
differentials (plugins/<fmt>/tests/*_differential.py for qed, qcow, bochs, cloop, dmg).

    d = OracleDiff(instar, workdir)
    d.same('convert to raw', ['convert', '-O', 'raw', 'x.img', '@out.raw'], outputs=['out.raw'])
    return report(d.results)

'@' in an argument becomes a per-tool prefix, so qemu-img and instar write (and, for `inputs`,
modify copies of) files of their own side by side; the prefix is turned back into '@' in the
output before comparing. Compared: exit status, stdout, stderr, and the bytes of every output and
input afterwards."""
import os
import shutil
import struct

from differential_support import QEMUS
from oracle_retry import run_fixture

VERSIONS = ('7.2', '10.0')
TAGS = {'qemu': 'Qx_', 'instar': 'Ix_'}


def sh(cmd, cwd):
    p = run_fixture(cmd, cwd=cwd, timeout=120)
    return p.returncode, p.stdout, p.stderr


def patch(src, dst, edits, extend=0):
    """A copy of `src` with struct-packed `edits` (offset, format, value) applied, the file grown
    with zeros where an edit lies past its end, then `extend` bytes of 0x01 appended."""
    d = bytearray(open(src, 'rb').read())
    for off, fmt, val in edits:
        if off + struct.calcsize(fmt) > len(d):
            d.extend(b'\0' * (off + struct.calcsize(fmt) - len(d)))
        struct.pack_into(fmt, d, off, val)
    d.extend(b'\x01' * extend)
    open(dst, 'wb').write(d)


class OracleDiff:
    def __init__(self, instar, work):
        self.work = work
        self.results = []
        # instar names itself after argv[0]: a link named qemu-img makes its error lines qemu-img's.
        os.mkdir(os.path.join(work, 'bin'))
        self.instar = os.path.join(work, 'bin', 'qemu-img')
        os.symlink(os.path.abspath(instar), self.instar)

    def path(self, name):
        return os.path.join(self.work, name)

    def write(self, name, data):
        with open(self.path(name), 'wb') as f:
            f.write(data)

    def fixture(self, *cmd):
        p = run_fixture(list(cmd), cwd=self.work, timeout=120)
        if p.returncode != 0:
            raise RuntimeError(f'fixture failed: {cmd}: {p.stderr}')

    def qemu_stderr(self, err, **_options):
        """qemu-img's stderr as instar is expected to print it (a format's differential overrides
        this for documented message differences; the options are the extra keywords of same())."""
        return err

    def same(self, label, args, outputs=(), inputs=(), versions=VERSIONS, named_source=False, qemu_rc=None,
             normalize=None, **options):
        """Runs `args` with each qemu-img and with instar (on copies of `inputs`, writing `outputs`).
        A failed command may leave qemu's empty or partial file and none of instar's (quirks
        create-atomic, convert-atomic); named_source: instar's convert error names the damaged
        source before qemu's words; qemu_rc: the exit status qemu gives where instar's is 0 (a
        documented divergence, e.g. qcow-compressed-exit-status); normalize: applied to every file's
        bytes before they are compared (e.g. a random identifier each tool writes)."""
        for ver in versions:
            got = {}
            for who in ('qemu', 'instar'):
                tag = TAGS[who]
                for f in inputs:
                    shutil.copyfile(self.path(f), self.path(tag + f))
                for f in outputs:
                    if os.path.exists(self.path(tag + f)):
                        os.unlink(self.path(tag + f))
                a = [x.replace('@', tag) for x in args]
                exe = [QEMUS[ver][0]] if who == 'qemu' else [self.instar, '--qemu-version', ver]
                rc, out, err = sh(exe + a, self.work)
                if who == 'qemu':
                    err = self.qemu_stderr(err, **options)
                files = {}
                for f in list(outputs) + list(inputs):
                    p = self.path(tag + f)
                    files[f] = open(p, 'rb').read() if os.path.exists(p) else None
                    if normalize is not None and files[f] is not None:
                        files[f] = normalize(files[f])
                got[who] = (rc, out.replace(tag, '@'), err.replace(tag, '@'), files)
            q, i = got['qemu'], got['instar']
            if qemu_rc is not None and q[0] == qemu_rc and i[0] == 0:
                q = (0,) + q[1:]
            if named_source and q[2].startswith('qemu-img: '):
                i = (i[0], i[1], i[2].replace("error while converting '" + args[-2] + "': ", ''), i[3])
            problems = []
            if q[0] != i[0]:
                problems.append(f'exit {i[0]} != {q[0]}')
            if q[1] != i[1]:
                problems.append(f'stdout differs:\n--- qemu\n{q[1]}--- instar\n{i[1]}')
            if q[2] != i[2]:
                problems.append(f'stderr differs:\n--- qemu\n{q[2]}--- instar\n{i[2]}')
            for f in q[3]:
                failed_without_file = q[0] != 0 and i[3][f] is None and (
                    q[3][f] == b'' or (named_source and i[0] != 0))
                if not failed_without_file and q[3][f] != i[3][f]:
                    problems.append(f'{f}: bytes differ')
            self.results.append((f'{label} [qemu {ver}]', problems))

    def read_only_format_cases(self, fmt, image, damaged=None):
        """What qemu-img says and does for a read-only format (no create, no writes: bochs, cloop):
        create, -o help, convert -O/-n, check, measure, dd, and the read commands that still work,
        on `image` (a good image of format `fmt` in the work directory), and every command that opens
        the image read-write (resize, rebase, commit, amend, snapshot -c/-d/-a, bitmap, check -r):
        qemu's "Image is read-only" before the header is read (`damaged`: a damaged image of the
        format, refused the same way), the image untouched."""
        self.same(f'create -f {fmt}', ['create', '-f', fmt, f'@c.{fmt}', '1M'], outputs=[f'c.{fmt}'])
        self.same(f'create -f {fmt} -o help', ['create', '-f', fmt, '-o', 'help'])
        self.same(f'convert -O {fmt}', ['convert', '-O', fmt, image, f'@t.{fmt}'], outputs=[f't.{fmt}'])
        self.same(f'check {image}', ['check', image])
        self.same(f'check --output=json {image}', ['check', '--output=json', image])
        # qemu opens the image read-write for convert -n, which a read-only driver refuses
        run_fixture([QEMUS['7.2'][0], 'create', '-q', '-f', 'raw', 'src.raw', '64K'], cwd=self.work, check=True)
        self.same(f'convert -n into {fmt}', ['convert', '-n', '-f', 'raw', '-O', fmt, 'src.raw', '@' + image],
                  inputs=[image])
        self.same(f'snapshot -l {image}', ['snapshot', '-l', image])
        self.same(f'convert -l snap {image}', ['convert', '-l', 'snap', '-O', 'raw', image, '@out.raw'],
                  outputs=['out.raw'])
        self.same(f'measure -O {fmt}', ['measure', '-O', fmt, image])
        self.same(f'measure {image} -O qcow2', ['measure', '-O', 'qcow2', image])
        self.same(f'dd -O {fmt}', ['dd', '-O', fmt, f'if={image}', f'of=@dd.{fmt}'], outputs=[f'dd.{fmt}'])
        self.same(f'dd from {image}', ['dd', '-O', 'raw', 'bs=64k', f'if={image}', 'of=@dd.raw'], outputs=['dd.raw'])
        run_fixture([QEMUS['7.2'][0], 'create', '-q', '-f', 'qcow2', 'ro-base.qcow2', '1M'], cwd=self.work, check=True)
        writing = [['resize', '@' + image, '2M'], ['resize', '-f', fmt, '--shrink', '@' + image, '512'],
                   ['rebase', '-u', '-b', 'ro-base.qcow2', '-F', 'qcow2', '@' + image],
                   ['rebase', '-b', 'ro-base.qcow2', '-F', 'qcow2', '@' + image], ['commit', '@' + image],
                   ['amend', '-o', 'size=2M', '@' + image], ['snapshot', '-c', 's0', '@' + image],
                   ['snapshot', '-d', 's0', '@' + image], ['snapshot', '-a', 's0', '-f', fmt, '@' + image],
                   ['bitmap', '--add', '@' + image, 'b0'], ['check', '-r', 'all', '@' + image],
                   ['check', '-r', 'leaks', '-f', fmt, '@' + image]]
        # larger than the image: qemu's read-write open fails before the sizes are compared
        run_fixture([QEMUS['7.2'][0], 'create', '-q', '-f', 'raw', 'big.raw', '64M'], cwd=self.work, check=True)
        writing.append(['convert', '-n', '-f', 'raw', '-O', fmt, 'big.raw', '@' + image])
        for args in writing:
            self.same(' '.join(a.replace('@', '') for a in args), args, inputs=[image])
        if damaged is not None:
            for args in (['resize', '-f', fmt, '@' + damaged, '2M'], ['commit', '-f', fmt, '@' + damaged]):
                self.same(' '.join(a.replace('@', '') for a in args), args, inputs=[damaged])
