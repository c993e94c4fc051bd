// NonceSequence and Aead (AES-256-GCM).
//
// Each thread keeps one encrypting and one decrypting EVP_CIPHER_CTX with the cipher already
// set, and re-keys it on every call (EVP_*Init_ex with a null cipher): a key schedule and GHASH
// table setup cost well under a microsecond, against tens of microseconds to seal a 128 KiB
// chunk, and the contexts are shared by every Aead object without any lock. The expanded key of
// the last Aead a thread used stays in that thread's context (ordinary heap) until the thread
// exits; the daemon keeps its keys for the whole mount anyway, and should disable core dumps.

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <memory>

#include "base/coding.h"
#include "crypto/crypto.h"
#include "crypto/internal.h"

namespace strata::crypto {

NonceSequence::NonceSequence(uint32_t epoch, uint64_t first_counter)
    : epoch_(epoch), next_counter_(first_counter) {}

std::array<unsigned char, kNonceSize> NonceSequence::Next() {
  uint64_t counter = next_counter_.load(std::memory_order_relaxed);
  do {
    // A wrapped counter would repeat nonces. 2^64 seals is out of reach, but a bad first_counter
    // is not: refuse rather than reuse.
    if (counter == UINT64_MAX) internal::Fatal("nonce counter exhausted for this epoch");
  } while (!next_counter_.compare_exchange_weak(counter, counter + 1, std::memory_order_relaxed));
  std::array<unsigned char, kNonceSize> nonce;
  char* p = reinterpret_cast<char*>(nonce.data());
  EncodeFixed32(p, epoch_);
  EncodeFixed64(p + 4, counter);
  return nonce;
}

namespace internal {
namespace {

// The largest piece handed to one EVP_*Update call (its length is an int).
constexpr size_t kMaxUpdate = size_t{1} << 30;

struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};

const EVP_CIPHER* Gcm() {
  static EVP_CIPHER* const gcm = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  if (gcm == nullptr) Fatal("cannot fetch AES-256-GCM");
  return gcm;
}

// This thread's GCM context for one direction, cipher set, not keyed yet.
EVP_CIPHER_CTX* ThreadContext(bool encrypt) {
  thread_local std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree> ctx[2];
  auto& c = ctx[encrypt ? 1 : 0];
  if (!c) {
    c.reset(EVP_CIPHER_CTX_new());
    if (!c || EVP_CipherInit_ex(c.get(), Gcm(), nullptr, nullptr, nullptr, encrypt ? 1 : 0) != 1) {
      Fatal("cannot set up an AES-256-GCM context");
    }
  }
  return c.get();
}

bool AddAssociatedData(EVP_CIPHER_CTX* ctx, std::string_view ad, bool encrypt) {
  const auto* p = reinterpret_cast<const unsigned char*>(ad.data());
  for (size_t left = ad.size(); left > 0;) {
    int piece = static_cast<int>(std::min(left, kMaxUpdate));
    int len = 0;
    int rc = encrypt ? EVP_EncryptUpdate(ctx, nullptr, &len, p, piece)
                     : EVP_DecryptUpdate(ctx, nullptr, &len, p, piece);
    if (rc != 1) return false;
    p += piece;
    left -= static_cast<size_t>(piece);
  }
  return true;
}

// GCM is a stream mode: every Update writes exactly as many bytes as it reads.
bool Transform(EVP_CIPHER_CTX* ctx, const unsigned char* in, size_t n, unsigned char* out,
               bool encrypt) {
  for (size_t done = 0; done < n;) {
    int piece = static_cast<int>(std::min(n - done, kMaxUpdate));
    int len = 0;
    int rc = encrypt ? EVP_EncryptUpdate(ctx, out + done, &len, in + done, piece)
                     : EVP_DecryptUpdate(ctx, out + done, &len, in + done, piece);
    if (rc != 1 || len != piece) return false;
    done += static_cast<size_t>(piece);
  }
  return true;
}

}  // namespace

Status GcmSeal(const unsigned char* key32, const std::array<unsigned char, kNonceSize>& nonce,
               std::string_view associated_data, const unsigned char* plaintext, size_t n,
               unsigned char* out) {
  EVP_CIPHER_CTX* ctx = ThreadContext(/*encrypt=*/true);
  std::memcpy(out, nonce.data(), kNonceSize);
  unsigned char* ct = out + kNonceSize;
  int final_len = 0;
  if (EVP_EncryptInit_ex(ctx, nullptr, nullptr, key32, nonce.data()) != 1 ||
      !AddAssociatedData(ctx, associated_data, true) || !Transform(ctx, plaintext, n, ct, true) ||
      EVP_EncryptFinal_ex(ctx, ct + n, &final_len) != 1 || final_len != 0 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, kTagSize, ct + n) != 1) {
    return Status::IOError("AES-256-GCM seal failed: " + DrainOpenSslErrors());
  }
  return Status::OK();
}

bool GcmOpen(const unsigned char* key32, std::string_view associated_data, std::string_view sealed,
             unsigned char* out) {
  if (sealed.size() < kSealOverhead) return false;
  const auto* nonce = reinterpret_cast<const unsigned char*>(sealed.data());
  const unsigned char* ct = nonce + kNonceSize;
  const size_t n = sealed.size() - kSealOverhead;
  unsigned char tag[kTagSize];
  std::memcpy(tag, ct + n, kTagSize);  // SET_TAG wants a mutable buffer

  EVP_CIPHER_CTX* ctx = ThreadContext(/*encrypt=*/false);
  int final_len = 0;
  bool ok = EVP_DecryptInit_ex(ctx, nullptr, nullptr, key32, nonce) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, kTagSize, tag) == 1 &&
            AddAssociatedData(ctx, associated_data, false) && Transform(ctx, ct, n, out, false) &&
            EVP_DecryptFinal_ex(ctx, out + n, &final_len) == 1;
  if (!ok) {
    // GCM decrypts before it verifies: never let unauthenticated plaintext out.
    OPENSSL_cleanse(out, n);
    DrainOpenSslErrors();  // a tag mismatch is data, not an OpenSSL failure; keep the queue empty
  }
  return ok;
}

}  // namespace internal

Aead::Aead(const SecretBytes& key32) {
  if (key32.size() != kKeySize) internal::Fatal("Aead needs a 32-byte key");
  key_ = internal::CopySecret(key32.data(), key32.size());
}

Status Aead::Seal(const std::array<unsigned char, kNonceSize>& nonce,
                  std::string_view associated_data, std::string_view plaintext,
                  std::string* out) const {
  // A moved-from key would make EVP_EncryptInit_ex keep the thread's previous key.
  if (key_.empty()) internal::Fatal("Seal on a moved-from Aead");
  const size_t base = out->size();
  out->resize(base + plaintext.size() + kSealOverhead);
  Status s = internal::GcmSeal(
      key_.data(), nonce, associated_data, reinterpret_cast<const unsigned char*>(plaintext.data()),
      plaintext.size(), reinterpret_cast<unsigned char*>(out->data() + base));
  if (!s.ok()) out->resize(base);
  return s;
}

Status Aead::Open(std::string_view associated_data, std::string_view sealed,
                  std::string* out) const {
  if (key_.empty()) internal::Fatal("Open on a moved-from Aead");
  if (sealed.size() < kSealOverhead) {
    out->clear();
    return Status::Corruption("AEAD tag mismatch: the sealed record is " +
                              std::to_string(sealed.size()) +
                              " bytes, shorter than its nonce and tag (28 bytes)");
  }
  out->resize(sealed.size() - kSealOverhead);
  if (!internal::GcmOpen(key_.data(), associated_data, sealed,
                         reinterpret_cast<unsigned char*>(out->data()))) {
    out->clear();
    return Status::Corruption(
        "AEAD tag mismatch (wrong key, or the record is damaged, truncated or misplaced)");
  }
  return Status::OK();
}

}  // namespace strata::crypto
