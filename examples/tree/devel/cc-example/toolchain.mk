# toolchain.mk: included by every package that compiles with cc-example
# (like pkgsrc's compiler.mk). A change here rescans all of them.

TOOL_DEPENDS+=	cc-example>=1.0:../../devel/cc-example
