#ifndef OVERSEER_CLMDB_SHIM_H
#define OVERSEER_CLMDB_SHIM_H
#include <lmdb.h>
#endif
