"""Run Autobahn|Testsuite's wstest from a `pip install --target` folder (Python 2.7).

Usage: python2.7 -E -s wstest_py27.py SITE_DIR [wstest arguments...]

A --target folder is not a site directory: Python does not read its .pth files, and
zope.interface's namespace package is declared in one. site.addsitedir() reads them. The folder is
also put first on sys.path so that its pinned setuptools/pkg_resources win over the
interpreter's own.
"""
import site
import sys


def main():
    if len(sys.argv) < 2:
        sys.stderr.write("usage: wstest_py27.py SITE_DIR [wstest arguments...]\n")
        return 2
    site_dir = sys.argv[1]
    sys.path.insert(0, site_dir)
    site.addsitedir(site_dir)
    sys.argv = ["wstest"] + sys.argv[2:]
    from autobahntestsuite.wstest import run

    return run()


if __name__ == "__main__":
    sys.exit(main())
