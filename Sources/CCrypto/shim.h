#ifndef OVERSEER_CCRYPTO_SHIM_H
#define OVERSEER_CCRYPTO_SHIM_H
#include <openssl/sha.h>
#endif
