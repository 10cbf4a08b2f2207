"""The amend tests' images (test_amend_oracle.py, test_amend_luks.py): each named image is made once
("master") by its setup steps, and every case works on a fresh copy of it."""
import os
import shutil


class Images:
    """images[name] is a list of steps, each a command (QIMG and QIO stand for the oracle's qemu-img and
    qemu-io) or a callable given the directory; or the name of another image to start from, whose
    further steps are images[name + "+"]. run(cmd, cwd, env) returns (rc, stdout, stderr)."""

    def __init__(self, work, images, run, env, qimg, qio):
        self.work, self.images, self.run, self.env, self.qimg, self.qio = work, images, run, env, qimg, qio
        self.made = {}

    def master(self, name):
        if name not in self.made:
            d = os.path.join(self.work, "master-" + name)
            base = self.images[name]
            if isinstance(base, str):
                shutil.copytree(self.master(base), d)
                steps = self.images[name + "+"]
            else:
                os.mkdir(d)
                steps = base
            for c in steps:
                if callable(c):
                    c(d)
                    continue
                c = [self.qimg if a == "QIMG" else self.qio if a == "QIO" else a for a in c]
                rc, _, err = self.run(c, d, self.env)
                if rc != 0:
                    raise RuntimeError("setup %s: %s\n%s" % (name, c, err))
            self.made[name] = d
        return self.made[name]

    def fresh(self, name, tag):
        d = os.path.join(self.work, tag)
        if os.path.exists(d):
            shutil.rmtree(d)
        shutil.copytree(self.master(name), d)
        return d
