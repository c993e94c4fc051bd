// Internals shared by the crypto/*.cc files. Not part of the public API: include crypto/crypto.h.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <string_view>

#include "crypto/crypto.h"

namespace strata::crypto::internal {

// For failures of OpenSSL itself (allocation, RNG): logs `what` and the OpenSSL error queue,
// then aborts. Never call it for anything that input data can cause.
[[noreturn]] void Fatal(std::string_view what);

// Drains this thread's OpenSSL error queue into "reason; reason" (or "no OpenSSL error").
std::string DrainOpenSslErrors();

// HKDF-SHA256 (RFC 5869) with an empty salt: fills `out` (its size is the output length) from
// `ikm` and `info`. Aborts on an OpenSSL failure.
void HkdfSha256(const SecretBytes& ikm, std::string_view info, SecretBytes* out);

SecretBytes CopySecret(const unsigned char* data, size_t n);

// AES-256-GCM on raw buffers, so that key material can be sealed from and opened into
// SecretBytes without passing through a std::string.
// Writes nonce || ciphertext || tag (n + kSealOverhead bytes) to `out`.
Status GcmSeal(const unsigned char* key32, const std::array<unsigned char, kNonceSize>& nonce,
               std::string_view associated_data, const unsigned char* plaintext, size_t n,
               unsigned char* out);
// Writes sealed.size() - kSealOverhead bytes to `out`. Returns false on a tag mismatch (after
// zeroing `out`) and also for a `sealed` shorter than kSealOverhead (without touching `out`).
bool GcmOpen(const unsigned char* key32, std::string_view associated_data, std::string_view sealed,
             unsigned char* out);

}  // namespace strata::crypto::internal
