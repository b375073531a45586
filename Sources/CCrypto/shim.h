#ifndef OVERSEER_CCRYPTO_SHIM_H
#define OVERSEER_CCRYPTO_SHIM_H
#include <openssl/crypto.h>
#include <openssl/sha.h>
#endif
