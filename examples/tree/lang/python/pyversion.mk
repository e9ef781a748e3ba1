# pyversion.mk: included by every py-* package. The package is scanned and
# built once per Python version: one pbulk record per value below, each with
# MULTI_VERSION= PYTHON_VERSION_REQD=<value>, and PYTHON_VERSION_REQD is in
# build.sh's environment.

MULTI_VERSION_VAR=	PYTHON_VERSION_REQD
MULTI_VERSION_VALUES=	312 313

PYPKGPREFIX=	py${PYTHON_VERSION_REQD}
DEPENDS+=	python${PYTHON_VERSION_REQD}>=3:../../lang/python${PYTHON_VERSION_REQD}
