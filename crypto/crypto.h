// strata::crypto: key material, AES-256-GCM sealing, deterministic name encryption and the
// keyring that wraps a filesystem's master secret. The algorithms, the key hierarchy and the
// byte layouts are specified in docs/crypto.md and docs/formats/keyring.md.
//
// Key hierarchy:
//   key file (KEK, 32 bytes, held by the operator)
//     -> HKDF-SHA256(info "strata v1 kek")   wraps the master secret in <hot>/keyring
//   master secret (32 random bytes, never stored in plaintext)
//     -> HKDF-SHA256(info "strata v1 data")  AES-256-GCM key for chunks and journal records
//     -> HKDF-SHA256(info "strata v1 names") AES-256-SIV key for file and xattr names
//
// Failures of the OpenSSL library itself (allocation failure, a broken RNG) are not data errors:
// functions without a Status abort the process, the others return IOError.
// Nothing here logs key bytes, plaintext or names.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/status.h"

namespace strata::crypto {

// Secret key material: the storage is its own page-aligned mapping, mlock()ed (so it is never
// swapped; a failed mlock, e.g. RLIMIT_MEMLOCK, logs one warning and goes on) and
// madvise(MADV_DONTDUMP)ed (absent from core dumps), and it is zeroed with OPENSSL_cleanse before
// it is unmapped. Move-only. Each non-empty SecretBytes costs at least one page.
class SecretBytes {
 public:
  SecretBytes();                        // empty
  explicit SecretBytes(size_t n);       // n zero bytes
  static SecretBytes Random(size_t n);  // from the OpenSSL DRBG; aborts if the RNG fails
  SecretBytes(SecretBytes&& other) noexcept;
  SecretBytes& operator=(SecretBytes&& other) noexcept;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;
  ~SecretBytes();

  unsigned char* data() { return data_; }
  const unsigned char* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  void Release();
  unsigned char* data_ = nullptr;  // nullptr iff size_ == 0
  size_t size_ = 0;
  size_t mapped_ = 0;  // bytes mapped at data_ (a whole number of pages)
};

// Reads the key-encryption key: the file holds exactly 32 raw bytes, or 64 hex digits (either
// case) with an optional trailing "\n" (what `openssl rand -hex 32` writes). Errors name the path
// and the problem: NotFound for a missing file, InvalidArgument for a wrong size or content
// ("key file /etc/strata/pacs.key: expected 32 bytes or 64 hex digits, found 17 bytes"), IOError
// for other syscall failures. Logs a warning when a regular key file is accessible to group or
// others. The file's bytes only ever live in locked memory.
Result<SecretBytes> LoadKeyFile(const std::string& path);

inline constexpr size_t kKeySize = 32;      // AES-256-GCM keys, the KEK and the master secret
inline constexpr size_t kNameKeySize = 64;  // AES-256-SIV: two AES-256 keys
inline constexpr size_t kNonceSize = 12, kTagSize = 16, kSealOverhead = kNonceSize + kTagSize;
inline constexpr size_t kNameOverhead = 16;  // the SIV tag in front of every encrypted name

// 96-bit GCM nonces that never repeat under one key:
//   0                         4                                12
//   +-------------------------+--------------------------------+
//   | epoch (u32 LE, 4 bytes) | counter (u64 LE, 8 bytes)      |
//   +-------------------------+--------------------------------+
// The caller bumps the epoch durably at every mount (and whenever another copy of the archive may
// start writing: a promoted mirror, a restore) before the first Next(), so the counter may
// restart at 0. Thread-safe. Next() aborts the process rather than wrap the counter.
class NonceSequence {
 public:
  explicit NonceSequence(uint32_t epoch, uint64_t first_counter = 0);
  NonceSequence(const NonceSequence&) = delete;
  NonceSequence& operator=(const NonceSequence&) = delete;

  std::array<unsigned char, kNonceSize> Next();
  uint32_t epoch() const { return epoch_; }

 private:
  const uint32_t epoch_;
  std::atomic<uint64_t> next_counter_;
};

// AES-256-GCM with a 96-bit nonce and a 128-bit tag. A sealed record is
//   nonce (12) || ciphertext (same length as the plaintext) || tag (16)
// Thread-safe: the object is immutable; each thread reuses its own OpenSSL context.
class Aead {
 public:
  explicit Aead(const SecretBytes& key32);  // copies the key; aborts unless it is 32 bytes
  Aead(Aead&&) noexcept = default;
  Aead& operator=(Aead&&) noexcept = default;

  // Appends nonce || ciphertext || tag (plaintext.size() + kSealOverhead bytes) to *out.
  // REQUIRES: neither view points into *out; the nonce was never used with this key before.
  Status Seal(const std::array<unsigned char, kNonceSize>& nonce, std::string_view associated_data,
              std::string_view plaintext, std::string* out) const;

  // Verifies and decrypts `sealed` (as produced by Seal); replaces *out with the plaintext.
  // A wrong key, a flipped bit, a truncation or different associated data give
  // Corruption("AEAD tag mismatch ...") and leave *out empty. The caller logs the alert with
  // the identity of the record (it knows the inode, chunk or LSN; this layer does not).
  // REQUIRES: neither view points into *out.
  Status Open(std::string_view associated_data, std::string_view sealed, std::string* out) const;

 private:
  SecretBytes key_;
};

// Deterministic name encryption: AES-256-SIV (RFC 5297, 64-byte key, no nonce) with one
// associated-data component, the 8-byte little-endian `context` (the parent directory inode for
// names; the owning inode for xattr names). The same (context, name) always gives the same
// ciphertext, so directory lookups stay index lookups; equal names under different contexts
// give unrelated ciphertexts. Output = SIV tag (16) || ciphertext (name.size()).
// Thread-safe: the keyed prototype contexts are only read (copied) after construction.
class NameCipher {
 public:
  explicit NameCipher(const SecretBytes& key64);  // aborts unless the key is 64 bytes
  NameCipher(NameCipher&&) noexcept;
  NameCipher& operator=(NameCipher&&) noexcept;
  ~NameCipher();  // out of line: Prototypes is defined in name_cipher.cc

  std::string Encrypt(uint64_t context, std::string_view name) const;
  // Corruption when the tag does not verify (wrong key, damaged bytes, or a ciphertext moved to
  // another context); *name is left empty then.
  Status Decrypt(uint64_t context, std::string_view ciphertext, std::string* name) const;

 private:
  struct Prototypes;  // keyed OpenSSL contexts, copied (never used directly) per call
  SecretBytes key_;   // K1 (S2V/CMAC) || K2 (CTR)
  std::unique_ptr<const Prototypes> prototypes_;
};

// The working keys of one filesystem, derived with HKDF-SHA256 (no salt) from its 32-byte master
// secret: info "strata v1 data" -> 32-byte AEAD key, info "strata v1 names" -> 64-byte SIV key.
class FsKeys {
 public:
  // Aborts unless `master` is 32 bytes.
  static std::unique_ptr<FsKeys> FromMaster(const SecretBytes& master);
  const Aead& aead() const { return aead_; }
  const NameCipher& names() const { return names_; }

 private:
  FsKeys(Aead aead, NameCipher names);
  Aead aead_;
  NameCipher names_;
};

// The keyring file, written by mkfs to <hot>/keyring: the master secret wrapped with the KEK.
// Format v1, 88 bytes, integers little-endian (normative spec: docs/formats/keyring.md):
//   0           8         10        12          28         40               72         88
//   +-----------+---------+---------+-----------+----------+----------------+----------+
//   | magic     | version | kdf     | fs_uuid   | nonce    | wrapped master | GCM tag  |
//   | STRKEYR\0 | u16 = 1 | u16     | 16 bytes  | 12 bytes | 32 bytes       | 16 bytes |
//   +-----------+---------+---------+-----------+----------+----------------+----------+
//   |<------------ associated data ------------>|<--------- AES-256-GCM seal --------->|
// kdf 0: the KEK is a raw 32-byte key file; 1 is reserved for an argon2id passphrase.
// nonce||wrapped||tag is an Aead seal under HKDF-SHA256(KEK, info "strata v1 kek") with
// associated data = bytes [0, 28) (the header).
inline constexpr size_t kKeyringSize = 88;

// Makes a fresh random master secret (returned in *master) and the keyring bytes that wrap it.
// InvalidArgument unless the KEK is 32 bytes.
Result<std::string> CreateKeyring(const SecretBytes& kek,
                                  const std::array<unsigned char, 16>& fs_uuid,
                                  SecretBytes* master);

// Unwraps the master secret. A wrong KEK (or a damaged wrapped key or uuid, which cannot be told
// apart) gives InvalidArgument("the key file does not unlock this filesystem (wrong key, or a
// damaged keyring)"). A bad magic, version, kdf or length gives Corruption naming what is wrong
// (kdf 1, reserved for passphrases, gives NotSupported). Stores the keyring's fs_uuid in *fs_uuid
// if non-null.
Result<SecretBytes> OpenKeyring(const SecretBytes& kek, std::string_view keyring,
                                std::array<unsigned char, 16>* fs_uuid = nullptr);

// Re-wraps the same master secret under a new KEK with a fresh nonce (for `strata key rotate`).
// The data and name keys do not change, so nothing else is re-encrypted. Errors as OpenKeyring
// for the old KEK; InvalidArgument unless the new KEK is 32 bytes.
Result<std::string> RewrapKeyring(const SecretBytes& old_kek, const SecretBytes& new_kek,
                                  std::string_view keyring);

}  // namespace strata::crypto
