#ifndef OVERSEER_CLIBPQ_SHIM_H
#define OVERSEER_CLIBPQ_SHIM_H
// libpq's client API. pkg-config (libpq.pc) adds its include directory, /usr/include/postgresql on Debian.
#include <libpq-fe.h>
#endif
