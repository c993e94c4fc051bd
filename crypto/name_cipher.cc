// NameCipher: AES-256-SIV (RFC 5297) through OpenSSL's "AES-256-SIV" cipher.
//
// OpenSSL's SIV context accepts one encryption per key setup, and a key setup (fetching CBC,
// CTR and CMAC, computing CMAC(0)) costs several microseconds. So the object keeps one keyed
// context per direction as a prototype that is never used directly; each call copies it into a
// per-thread working context (about a third of the cost; EVP_CIPHER_CTX_copy takes the source
// as const, so concurrent copies of one prototype are safe) and resets the copy afterwards, so
// no key material lingers in thread-local memory.
//
// OpenSSL 3.0 cannot process an empty plaintext with SIV (the final step fails), so the empty
// name is computed here from the RFC 5297 S2V definition with AES-CMAC directly; its encryption
// is the 16-byte tag alone, as RFC 5297 specifies.

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <climits>
#include <cstring>
#include <memory>

#include "base/coding.h"
#include "crypto/crypto.h"
#include "crypto/internal.h"

namespace strata::crypto {
namespace {

using internal::Fatal;

struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;

const EVP_CIPHER* Siv() {
  static EVP_CIPHER* const siv = EVP_CIPHER_fetch(nullptr, "AES-256-SIV", nullptr);
  if (siv == nullptr) Fatal("cannot fetch AES-256-SIV");
  return siv;
}

EVP_CIPHER_CTX* ThreadWorkContext() {
  thread_local CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx) Fatal("EVP_CIPHER_CTX_new failed");
  return ctx.get();
}

// Resets the working context on every exit path, which frees (and cleanses) the keyed copy.
class WorkContext {
 public:
  WorkContext() : ctx_(ThreadWorkContext()) {}
  ~WorkContext() { EVP_CIPHER_CTX_reset(ctx_); }
  EVP_CIPHER_CTX* get() const { return ctx_; }

 private:
  EVP_CIPHER_CTX* ctx_;
};

constexpr size_t kBlock = 16;

// AES-256-CMAC (RFC 4493) of data under k1.
void Cmac(const unsigned char* k1, const unsigned char* data, size_t n, unsigned char* out) {
  static EVP_MAC* const cmac = EVP_MAC_fetch(nullptr, "CMAC", nullptr);
  if (cmac == nullptr) Fatal("cannot fetch CMAC");
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(cmac);
  if (ctx == nullptr) Fatal("EVP_MAC_CTX_new failed");
  char cipher[] = "AES-256-CBC";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, cipher, 0),
      OSSL_PARAM_construct_end(),
  };
  size_t out_len = 0;
  bool ok = EVP_MAC_init(ctx, k1, kKeySize, params) == 1 && EVP_MAC_update(ctx, data, n) == 1 &&
            EVP_MAC_final(ctx, out, &out_len, kBlock) == 1 && out_len == kBlock;
  EVP_MAC_CTX_free(ctx);
  if (!ok) Fatal("AES-CMAC failed");
}

// Doubling in GF(2^128) as RFC 5297 defines it (big-endian, reduction constant 0x87).
void Dbl(unsigned char* b) {
  const unsigned char carry = b[0] >> 7;
  for (size_t i = 0; i + 1 < kBlock; ++i)
    b[i] = static_cast<unsigned char>(b[i] << 1 | b[i + 1] >> 7);
  b[kBlock - 1] = static_cast<unsigned char>(b[kBlock - 1] << 1 ^ (carry ? 0x87 : 0));
}

// S2V(K1, context, "") of RFC 5297: the SIV tag of an empty name.
void S2vOfEmpty(const unsigned char* k1, const unsigned char* ad, size_t ad_len,
                unsigned char* out) {
  const unsigned char zero[kBlock] = {};
  unsigned char d[kBlock], mac[kBlock];
  Cmac(k1, zero, kBlock, d);
  Dbl(d);
  Cmac(k1, ad, ad_len, mac);
  for (size_t i = 0; i < kBlock; ++i) d[i] ^= mac[i];
  Dbl(d);
  d[0] ^= 0x80;  // pad(""): a single 1 bit, then zeros
  Cmac(k1, d, kBlock, out);
}

Status TagMismatch() {
  return Status::Corruption(
      "SIV tag mismatch (wrong key, a damaged name, or a name moved to another directory)");
}

}  // namespace

struct NameCipher::Prototypes {
  CipherCtxPtr encrypt;
  CipherCtxPtr decrypt;
};

NameCipher::NameCipher(const SecretBytes& key64) {
  if (key64.size() != kNameKeySize) Fatal("NameCipher needs a 64-byte key");
  key_ = internal::CopySecret(key64.data(), key64.size());
  auto p = std::make_unique<Prototypes>();
  p->encrypt.reset(EVP_CIPHER_CTX_new());
  p->decrypt.reset(EVP_CIPHER_CTX_new());
  if (!p->encrypt || !p->decrypt ||
      EVP_CipherInit_ex2(p->encrypt.get(), Siv(), key_.data(), nullptr, 1, nullptr) != 1 ||
      EVP_CipherInit_ex2(p->decrypt.get(), Siv(), key_.data(), nullptr, 0, nullptr) != 1) {
    Fatal("cannot set up AES-256-SIV");
  }
  prototypes_ = std::move(p);
}

NameCipher::NameCipher(NameCipher&&) noexcept = default;
NameCipher& NameCipher::operator=(NameCipher&&) noexcept = default;
NameCipher::~NameCipher() = default;

std::string NameCipher::Encrypt(uint64_t context, std::string_view name) const {
  if (!prototypes_) Fatal("Encrypt on a moved-from NameCipher");
  if (name.size() > INT_MAX - kNameOverhead) Fatal("name too long to encrypt");
  char ad[8];
  EncodeFixed64(ad, context);
  const auto* ad_bytes = reinterpret_cast<const unsigned char*>(ad);
  std::string out(kNameOverhead + name.size(), '\0');
  auto* tag = reinterpret_cast<unsigned char*>(out.data());
  if (name.empty()) {
    S2vOfEmpty(key_.data(), ad_bytes, sizeof ad, tag);
    return out;
  }
  const int n = static_cast<int>(name.size());
  WorkContext w;
  int len = 0, final_len = 0;
  bool ok = EVP_CIPHER_CTX_copy(w.get(), prototypes_->encrypt.get()) == 1 &&
            EVP_EncryptUpdate(w.get(), nullptr, &len, ad_bytes, sizeof ad) == 1 &&
            EVP_EncryptUpdate(w.get(), tag + kNameOverhead, &len,
                              reinterpret_cast<const unsigned char*>(name.data()), n) == 1 &&
            len == n && EVP_EncryptFinal_ex(w.get(), tag + kNameOverhead + n, &final_len) == 1 &&
            final_len == 0 &&
            EVP_CIPHER_CTX_ctrl(w.get(), EVP_CTRL_AEAD_GET_TAG, kNameOverhead, tag) == 1;
  if (!ok) Fatal("AES-256-SIV encryption failed");
  return out;
}

Status NameCipher::Decrypt(uint64_t context, std::string_view ciphertext, std::string* name) const {
  if (!prototypes_) Fatal("Decrypt on a moved-from NameCipher");
  name->clear();
  if (ciphertext.size() < kNameOverhead) {
    return Status::Corruption("SIV tag mismatch: the encrypted name is " +
                              std::to_string(ciphertext.size()) +
                              " bytes, shorter than its 16-byte tag");
  }
  if (ciphertext.size() > INT_MAX) return Status::Corruption("encrypted name is implausibly long");
  char ad[8];
  EncodeFixed64(ad, context);
  const auto* ad_bytes = reinterpret_cast<const unsigned char*>(ad);
  unsigned char tag[kNameOverhead];
  std::memcpy(tag, ciphertext.data(), kNameOverhead);
  const size_t n = ciphertext.size() - kNameOverhead;
  if (n == 0) {
    unsigned char expected[kNameOverhead];
    S2vOfEmpty(key_.data(), ad_bytes, sizeof ad, expected);
    return CRYPTO_memcmp(expected, tag, kNameOverhead) == 0 ? Status::OK() : TagMismatch();
  }
  std::string plain(n, '\0');
  auto* out = reinterpret_cast<unsigned char*>(plain.data());
  WorkContext w;
  int len = 0, final_len = 0;
  // SIV verifies inside the Update that decrypts (OpenSSL zeroes the output on a mismatch);
  // Final reports that verdict again.
  bool ok =
      EVP_CIPHER_CTX_copy(w.get(), prototypes_->decrypt.get()) == 1 &&
      EVP_CIPHER_CTX_ctrl(w.get(), EVP_CTRL_AEAD_SET_TAG, kNameOverhead, tag) == 1 &&
      EVP_DecryptUpdate(w.get(), nullptr, &len, ad_bytes, sizeof ad) == 1 &&
      EVP_DecryptUpdate(w.get(), out, &len,
                        reinterpret_cast<const unsigned char*>(ciphertext.data()) + kNameOverhead,
                        static_cast<int>(n)) == 1 &&
      static_cast<size_t>(len) == n && EVP_DecryptFinal_ex(w.get(), out + n, &final_len) == 1;
  if (!ok) {
    OPENSSL_cleanse(out, n);
    internal::DrainOpenSslErrors();
    return TagMismatch();
  }
  *name = std::move(plain);
  return Status::OK();
}

}  // namespace strata::crypto
