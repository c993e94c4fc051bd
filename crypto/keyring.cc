// FsKeys and the keyring file (format v1, docs/formats/keyring.md).

#include <openssl/rand.h>

#include <cstring>

#include "base/coding.h"
#include "crypto/crypto.h"
#include "crypto/internal.h"

namespace strata::crypto {

std::unique_ptr<FsKeys> FsKeys::FromMaster(const SecretBytes& master) {
  if (master.size() != kKeySize) internal::Fatal("FsKeys needs a 32-byte master secret");
  SecretBytes data_key(kKeySize), name_key(kNameKeySize);
  internal::HkdfSha256(master, "strata v1 data", &data_key);
  internal::HkdfSha256(master, "strata v1 names", &name_key);
  // The derived keys are copied into the objects and cleansed here on return.
  return std::unique_ptr<FsKeys>(new FsKeys(Aead(data_key), NameCipher(name_key)));
}

FsKeys::FsKeys(Aead aead, NameCipher names) : aead_(std::move(aead)), names_(std::move(names)) {}

namespace {

constexpr char kMagic[8] = {'S', 'T', 'R', 'K', 'E', 'Y', 'R', '\0'};
constexpr uint16_t kVersion = 1;
constexpr uint16_t kKdfRawKey = 0;
constexpr uint16_t kKdfArgon2id = 1;  // reserved
constexpr size_t kHeaderSize = 8 + 2 + 2 + 16;
static_assert(kKeyringSize == kHeaderSize + kSealOverhead + kKeySize);

const char kWrongKey[] =
    "the key file does not unlock this filesystem (wrong key, or a damaged keyring)";

Status CheckKek(const SecretBytes& kek, const char* which) {
  if (kek.size() != kKeySize) {
    return Status::InvalidArgument(std::string(which) + " must be 32 bytes, got " +
                                   std::to_string(kek.size()));
  }
  return Status::OK();
}

SecretBytes WrappingKey(const SecretBytes& kek) {
  SecretBytes wrapping(kKeySize);
  internal::HkdfSha256(kek, "strata v1 kek", &wrapping);
  return wrapping;
}

// Builds a keyring that wraps `master` under `kek` with a fresh random nonce.
Result<std::string> Wrap(const SecretBytes& kek, const std::array<unsigned char, 16>& fs_uuid,
                         const SecretBytes& master) {
  std::string out(kMagic, sizeof kMagic);
  PutFixed16(&out, kVersion);
  PutFixed16(&out, kKdfRawKey);
  out.append(reinterpret_cast<const char*>(fs_uuid.data()), fs_uuid.size());
  std::array<unsigned char, kNonceSize> nonce;
  // Random nonces are safe here: a keyring is sealed a handful of times per KEK, not 2^32.
  if (RAND_bytes(nonce.data(), nonce.size()) != 1) {
    internal::Fatal("the OpenSSL random generator failed");
  }
  out.resize(kKeyringSize);
  const SecretBytes wrapping = WrappingKey(kek);
  RETURN_IF_ERROR(internal::GcmSeal(
      wrapping.data(), nonce, std::string_view(out.data(), kHeaderSize), master.data(),
      master.size(), reinterpret_cast<unsigned char*>(out.data() + kHeaderSize)));
  return out;
}

}  // namespace

Result<std::string> CreateKeyring(const SecretBytes& kek,
                                  const std::array<unsigned char, 16>& fs_uuid,
                                  SecretBytes* master) {
  RETURN_IF_ERROR(CheckKek(kek, "the key-encryption key"));
  SecretBytes fresh = SecretBytes::Random(kKeySize);
  ASSIGN_OR_RETURN(std::string keyring, Wrap(kek, fs_uuid, fresh));
  *master = std::move(fresh);
  return keyring;
}

Result<SecretBytes> OpenKeyring(const SecretBytes& kek, std::string_view keyring,
                                std::array<unsigned char, 16>* fs_uuid) {
  RETURN_IF_ERROR(CheckKek(kek, "the key-encryption key"));
  if (keyring.size() < sizeof kMagic || std::memcmp(keyring.data(), kMagic, sizeof kMagic) != 0) {
    return Status::Corruption("keyring: bad magic (not a strata keyring)");
  }
  Decoder d(keyring.substr(sizeof kMagic));
  uint16_t version = 0, kdf = 0;
  if (!d.GetU16(&version) || !d.GetU16(&kdf)) {
    return Status::Corruption("keyring: truncated header (" + std::to_string(keyring.size()) +
                              " bytes, expected " + std::to_string(kKeyringSize) + ")");
  }
  if (version != kVersion) {
    return Status::Corruption("keyring: unsupported version " + std::to_string(version) +
                              " (this program reads version 1)");
  }
  if (kdf == kKdfArgon2id) {
    return Status::NotSupported("keyring: kdf 1 (argon2id passphrase) is not supported yet");
  }
  if (kdf != kKdfRawKey) return Status::Corruption("keyring: unknown kdf " + std::to_string(kdf));
  if (keyring.size() != kKeyringSize) {
    return Status::Corruption("keyring: wrong length " + std::to_string(keyring.size()) +
                              " bytes, expected " + std::to_string(kKeyringSize));
  }
  SecretBytes master(kKeySize);
  const SecretBytes wrapping = WrappingKey(kek);
  if (!internal::GcmOpen(wrapping.data(), keyring.substr(0, kHeaderSize),
                         keyring.substr(kHeaderSize), master.data())) {
    return Status::InvalidArgument(kWrongKey);
  }
  if (fs_uuid != nullptr) std::memcpy(fs_uuid->data(), keyring.data() + 12, fs_uuid->size());
  return master;
}

Result<std::string> RewrapKeyring(const SecretBytes& old_kek, const SecretBytes& new_kek,
                                  std::string_view keyring) {
  RETURN_IF_ERROR(CheckKek(new_kek, "the new key-encryption key"));
  std::array<unsigned char, 16> fs_uuid;
  ASSIGN_OR_RETURN(SecretBytes master, OpenKeyring(old_kek, keyring, &fs_uuid));
  return Wrap(new_kek, fs_uuid, master);
}

}  // namespace strata::crypto
