"""`cmake --install` of this build tree is honest (docs/operations.md, "Installing from source"):
into temp DESTDIRs, each file lands where the configured prefix says and the binaries, the config
and the unit name those same paths; a second install keeps an edited config byte for byte and puts
the new default beside it as taskhub.toml.dist; an install-time --prefix other than the configured
one is refused before anything is installed.

CTest sets:
    TASKHUB_BUILD_DIR   the build tree (built; installing does not rebuild)
    TASKHUB_CMAKE       the cmake that configured it
    TASKHUB_PREFIX      its CMAKE_INSTALL_PREFIX
    TASKHUB_SBINDIR, TASKHUB_BINDIR, TASKHUB_CONFIG, TASKHUB_RUNNER, TASKHUB_INSTALLED_PLUGIN_DIR,
    TASKHUB_UNIT_DIR, TASKHUB_SYSUSERS_DIR   where the configured prefix puts things (absolute)"""

import os
import shutil
import subprocess
import tempfile
import unittest

ENV = os.environ
BUILD = ENV.get("TASKHUB_BUILD_DIR", "")
CMAKE = ENV.get("TASKHUB_CMAKE") or "cmake"


def install(destdir, *args):
    env = dict(os.environ, DESTDIR=destdir)
    return subprocess.run([CMAKE, "--install", BUILD] + list(args), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, env=env, timeout=100)


class CmakeInstallTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(os.path.join(BUILD, "CMakeCache.txt")):
            raise RuntimeError("TASKHUB_BUILD_DIR must name the build tree to install, found %r" % BUILD)
        cls.tmp = tempfile.mkdtemp(prefix="th-install-", dir="/tmp")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def read(self, path, mode="r"):
        with open(path, mode) as f:
            return f.read()

    def test_fresh_install_then_upgrade_over_an_edited_config(self):
        root = os.path.join(self.tmp, "fresh")
        p = install(root)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        config = root + ENV["TASKHUB_CONFIG"]
        etc = os.path.dirname(config)
        self.assertTrue(os.path.isfile(config))
        self.assertFalse(os.path.exists(config + ".dist"))
        self.assertTrue(os.path.isdir(config + ".d"))
        self.assertTrue(os.path.isdir(os.path.join(etc, "workflows.d")))
        text = self.read(config)
        self.assertIn('workflows_dir = "%s"' % os.path.join(os.path.dirname(ENV["TASKHUB_CONFIG"]), "workflows.d"),
                      text)
        self.assertIn('plugin_dirs = ["%s"]' % ENV["TASKHUB_INSTALLED_PLUGIN_DIR"], text)
        self.assertIn('admin_group = "taskhub"', text)

        # The unit runs the installed daemon on the installed config.
        unit = self.read(os.path.join(root + ENV["TASKHUB_UNIT_DIR"], "taskhubd.service"))
        self.assertIn("\nExecStart=%s/taskhubd --config %s\n" % (ENV["TASKHUB_SBINDIR"], ENV["TASKHUB_CONFIG"]), unit)
        # The group of admin_group, for systemd-sysusers.
        sysusers = self.read(os.path.join(root + ENV["TASKHUB_SYSUSERS_DIR"], "taskhub.conf"))
        self.assertEqual([l for l in sysusers.splitlines() if l and not l.startswith("#")], ["g taskhub - -"])

        # The binaries are where the unit and the daemon look for them, and name the same paths.
        daemon = root + ENV["TASKHUB_SBINDIR"] + "/taskhubd"
        runner = root + ENV["TASKHUB_RUNNER"]
        for exe in (daemon, runner, root + ENV["TASKHUB_BINDIR"] + "/taskhubctl"):
            self.assertTrue(os.access(exe, os.X_OK), exe)
        self.assertTrue(os.path.isfile(os.path.join(root + ENV["TASKHUB_INSTALLED_PLUGIN_DIR"], "shell.so")))
        binary = self.read(daemon, "rb")
        for path in (ENV["TASKHUB_CONFIG"], ENV["TASKHUB_RUNNER"], ENV["TASKHUB_INSTALLED_PLUGIN_DIR"]):
            self.assertIn(path.encode() + b"\0", binary, "taskhubd does not name " + path)
        self.assertIn(ENV["TASKHUB_CONFIG"].encode() + b"\0", self.read(root + ENV["TASKHUB_BINDIR"] + "/taskhubctl",
                                                                         "rb"))

        # Installed again over the same config: nothing to keep.
        p = install(root)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertFalse(os.path.exists(config + ".dist"))
        self.assertNotIn("Kept the existing", p.stdout + p.stderr)

        # Installed again over an edited config: kept byte for byte, the new default beside it.
        edited = text.replace("[pool]", "# edited by the operator\n[pool]").encode() + b"\n\xc3\xa9\n"
        with open(config, "wb") as f:
            f.write(edited)
        p = install(root)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(self.read(config, "rb"), edited)
        self.assertEqual(self.read(config + ".dist"), text)
        self.assertIn("Kept the existing %s unchanged; the new default is %s.dist" % (config, config),
                      " ".join((p.stdout + p.stderr).split()))

    def test_another_prefix_is_refused_before_anything_is_installed(self):
        root = os.path.join(self.tmp, "elsewhere")
        for args in (["--prefix", "/somewhere/else"], ["--prefix", "/somewhere/else", "--component", "Unspecified"]):
            p = install(root, *args)
            self.assertNotEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertIn("Configure the build with -DCMAKE_INSTALL_PREFIX=/somewhere/else", " ".join(p.stderr.split()))
            self.assertFalse(os.path.exists(root), "files were installed before the prefix was refused")
        # The configured prefix, spelled with a trailing slash, is the same prefix.
        p = install(os.path.join(self.tmp, "same"), "--prefix", ENV["TASKHUB_PREFIX"] + "/")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
