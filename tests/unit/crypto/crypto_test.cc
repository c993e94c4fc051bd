#include "crypto/crypto.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/coding.h"

// Known-answer vectors marked "independent" were computed from docs/crypto.md and
// docs/formats/keyring.md with python3-cryptography, not with this code: they pin the formats.

namespace strata::crypto {
namespace {

using Nonce = std::array<unsigned char, kNonceSize>;

std::string Hex(std::string_view s) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

std::string Unhex(std::string_view hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out += static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16));
  }
  return out;
}

SecretBytes Key(size_t n, unsigned char first) {
  SecretBytes k(n);
  for (size_t i = 0; i < n; ++i) k.data()[i] = static_cast<unsigned char>(first + i);
  return k;
}

std::string Bytes(const SecretBytes& s) {
  return std::string(reinterpret_cast<const char*>(s.data()), s.size());
}

Nonce MakeNonce(uint32_t epoch, uint64_t counter) { return NonceSequence(epoch, counter).Next(); }

// The associated data a chunk would carry: filesystem, inode, chunk index, version.
std::string ChunkAd(uint64_t inode, uint64_t index, uint64_t version) {
  std::string ad = "fs-uuid-16-bytes";
  PutFixed64(&ad, inode);
  PutFixed64(&ad, index);
  PutFixed64(&ad, version);
  return ad;
}

std::string Pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i * 131 + (i >> 8));
  return s;
}

// ---------------------------------------------------------------------------------------------
// SecretBytes

TEST(SecretBytesTest, EmptyHasNoStorage) {
  SecretBytes s;
  EXPECT_TRUE(s.empty());
  EXPECT_EQ(s.size(), 0u);
  EXPECT_EQ(s.data(), nullptr);
  EXPECT_TRUE(SecretBytes(0).empty());
  EXPECT_TRUE(SecretBytes::Random(0).empty());
}

TEST(SecretBytesTest, SizedIsZeroFilled) {
  SecretBytes s(5000);  // more than a page
  ASSERT_EQ(s.size(), 5000u);
  EXPECT_EQ(Bytes(s), std::string(5000, '\0'));
  s.data()[4999] = 7;  // the whole range is writable
}

TEST(SecretBytesTest, RandomIsRandom) {
  SecretBytes a = SecretBytes::Random(32), b = SecretBytes::Random(32);
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(Bytes(a), Bytes(b));
  EXPECT_NE(Bytes(a), std::string(32, '\0'));
}

TEST(SecretBytesTest, MoveTransfersOwnership) {
  SecretBytes a = Key(32, 1);
  const unsigned char* p = a.data();
  SecretBytes b(std::move(a));
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(b.data(), p);
  SecretBytes c = Key(16, 9);
  c = std::move(b);
  EXPECT_EQ(c.data(), p);
  EXPECT_EQ(c.size(), 32u);
  EXPECT_EQ(c.data()[0], 1);
}

// ---------------------------------------------------------------------------------------------
// NonceSequence

TEST(NonceSequenceTest, LayoutIsEpochThenCounterLittleEndian) {
  NonceSequence seq(0x04030201, 0x0c0b0a0908070605);
  Nonce n = seq.Next();
  EXPECT_EQ(Hex(std::string_view(reinterpret_cast<char*>(n.data()), n.size())),
            "0102030405060708090a0b0c");
  n = seq.Next();
  EXPECT_EQ(n[4], 0x06);  // the counter advanced by one
  EXPECT_EQ(seq.epoch(), 0x04030201u);
}

TEST(NonceSequenceTest, CounterStartsAtZeroByDefault) {
  NonceSequence seq(9);
  Nonce n = seq.Next();
  EXPECT_EQ(DecodeFixed32(reinterpret_cast<char*>(n.data())), 9u);
  EXPECT_EQ(DecodeFixed64(reinterpret_cast<char*>(n.data()) + 4), 0u);
}

TEST(NonceSequenceTest, ManyCallsNeverRepeat) {
  NonceSequence seq(1);
  std::set<Nonce> seen;
  for (int i = 0; i < 100000; ++i) ASSERT_TRUE(seen.insert(seq.Next()).second) << i;
}

TEST(NonceSequenceTest, ConcurrentCallsNeverRepeat) {
  NonceSequence seq(2);
  constexpr int kThreads = 4, kPerThread = 25000;
  std::vector<std::vector<Nonce>> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&seq, &got, t] {
      for (int i = 0; i < kPerThread; ++i) got[t].push_back(seq.Next());
    });
  }
  for (auto& th : threads) th.join();
  std::set<Nonce> seen;
  for (const auto& v : got) seen.insert(v.begin(), v.end());
  EXPECT_EQ(seen.size(), size_t{kThreads} * kPerThread);
}

TEST(NonceSequenceTest, DifferentEpochsGiveDifferentNonces) {
  // A restarted counter under a new epoch (the next mount) repeats no nonce of the old one.
  NonceSequence a(1), b(2);
  std::set<Nonce> seen;
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(seen.insert(a.Next()).second);
    ASSERT_TRUE(seen.insert(b.Next()).second);
  }
}

TEST(NonceSequenceDeathTest, ExhaustedCounterAbortsInsteadOfWrapping) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        NonceSequence seq(1, UINT64_MAX - 1);
        seq.Next();  // UINT64_MAX - 1 is still fresh
        seq.Next();  // the next one would wrap to 0
      },
      "nonce counter exhausted");
}

// ---------------------------------------------------------------------------------------------
// Aead

class AeadTest : public testing::Test {
 protected:
  AeadTest() : aead_(Key(32, 0x40)) {}

  std::string Seal(std::string_view ad, std::string_view plaintext, uint64_t counter = 1) {
    std::string out;
    EXPECT_TRUE(aead_.Seal(MakeNonce(3, counter), ad, plaintext, &out).ok());
    return out;
  }

  Aead aead_;
};

TEST_F(AeadTest, EmptyPlaintextRoundTrip) {
  std::string sealed = Seal("ad", "");
  EXPECT_EQ(sealed.size(), kSealOverhead);
  std::string out = "stale";
  ASSERT_TRUE(aead_.Open("ad", sealed, &out).ok());
  EXPECT_EQ(out, "");
}

TEST_F(AeadTest, OneMebibyteRoundTrip) {
  const std::string plain = Pattern(1 << 20);
  const std::string ad = ChunkAd(77, 5, 1);
  std::string sealed = Seal(ad, plain);
  ASSERT_EQ(sealed.size(), plain.size() + kSealOverhead);
  EXPECT_NE(sealed.substr(kNonceSize, 4096), plain.substr(0, 4096));
  std::string out;
  ASSERT_TRUE(aead_.Open(ad, sealed, &out).ok());
  EXPECT_TRUE(out == plain);
}

TEST_F(AeadTest, SealAppendsNonceCiphertextTag) {
  std::string out = "prefix";
  Nonce nonce = MakeNonce(3, 42);
  ASSERT_TRUE(aead_.Seal(nonce, "ad", "hello", &out).ok());
  ASSERT_EQ(out.size(), 6 + 5 + kSealOverhead);
  EXPECT_EQ(out.substr(0, 6), "prefix");
  EXPECT_EQ(out.substr(6, kNonceSize),
            std::string(reinterpret_cast<char*>(nonce.data()), kNonceSize));
  std::string plain;
  ASSERT_TRUE(aead_.Open("ad", std::string_view(out).substr(6), &plain).ok());
  EXPECT_EQ(plain, "hello");
}

TEST_F(AeadTest, SameInputsDifferentNoncesDiffer) {
  EXPECT_NE(Seal("ad", "same", 1), Seal("ad", "same", 2));
}

TEST(AeadKnownAnswerTest, McGrewViegaTestCases13And14) {
  // "The Galois/Counter Mode of Operation", test cases 13 and 14: zero 256-bit key, zero IV.
  Aead aead{SecretBytes(32)};
  Nonce zero{};
  std::string out;
  ASSERT_TRUE(aead.Seal(zero, "", "", &out).ok());
  EXPECT_EQ(Hex(out), std::string(24, '0') + "530f8afbc74536b9a963b4f1c4cb738b");
  out.clear();
  ASSERT_TRUE(aead.Seal(zero, "", std::string(16, '\0'), &out).ok());
  EXPECT_EQ(Hex(out), std::string(24, '0') +
                          "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919");
}

TEST_F(AeadTest, WrongKeyIsCorruption) {
  std::string sealed = Seal("ad", "patient data");
  Aead other(Key(32, 0x41));
  std::string out = "stale";
  Status s = other.Open("ad", sealed, &out);
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(s.message().find("AEAD tag mismatch"), std::string::npos) << s.message();
  EXPECT_EQ(out, "");  // no unauthenticated plaintext escapes
}

TEST_F(AeadTest, FlippedBitAnywhereIsCorruption) {
  // Covers the nonce (bytes 0-11), the ciphertext and the tag (the last 16 bytes).
  const std::string sealed = Seal("ad", Pattern(64));
  for (size_t i = 0; i < sealed.size(); ++i) {
    for (int bit : {0, 7}) {
      std::string bad = sealed;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      std::string out;
      Status s = aead_.Open("ad", bad, &out);
      ASSERT_TRUE(s.IsCorruption()) << "byte " << i << " bit " << bit << ": " << s.ToString();
      ASSERT_TRUE(out.empty());
    }
  }
}

TEST_F(AeadTest, TruncatedIsCorruption) {
  const std::string sealed = Seal("ad", Pattern(100));
  for (size_t len = 0; len < sealed.size(); ++len) {
    std::string out;
    Status s = aead_.Open("ad", std::string_view(sealed).substr(0, len), &out);
    ASSERT_TRUE(s.IsCorruption()) << len;
    ASSERT_NE(s.message().find("AEAD tag mismatch"), std::string::npos) << s.message();
  }
}

TEST_F(AeadTest, ExtendedIsCorruption) {
  std::string out;
  EXPECT_TRUE(aead_.Open("ad", Seal("ad", "abc") + "x", &out).IsCorruption());
}

TEST_F(AeadTest, DifferentAssociatedDataIsCorruption) {
  const std::string sealed = Seal(ChunkAd(10, 3, 1), "chunk three");
  std::string out;
  EXPECT_TRUE(aead_.Open(ChunkAd(10, 3, 1), sealed, &out).ok());
  EXPECT_TRUE(aead_.Open(ChunkAd(10, 4, 1), sealed, &out).IsCorruption());  // chunk index
  EXPECT_TRUE(aead_.Open(ChunkAd(11, 3, 1), sealed, &out).IsCorruption());  // inode
  EXPECT_TRUE(aead_.Open(ChunkAd(10, 3, 2), sealed, &out).IsCorruption());  // version
  EXPECT_TRUE(aead_.Open("", sealed, &out).IsCorruption());
}

TEST_F(AeadTest, SwappedChunksAreCorruption) {
  std::string c0 = Seal(ChunkAd(10, 0, 1), "chunk zero", 1);
  std::string c1 = Seal(ChunkAd(10, 1, 1), "chunk one", 2);
  std::string out;
  EXPECT_TRUE(aead_.Open(ChunkAd(10, 0, 1), c1, &out).IsCorruption());
  EXPECT_TRUE(aead_.Open(ChunkAd(10, 1, 1), c0, &out).IsCorruption());
}

TEST_F(AeadTest, MovedAeadKeepsItsKey) {
  std::string sealed = Seal("ad", "moved");
  Aead moved(std::move(aead_));
  std::string out;
  ASSERT_TRUE(moved.Open("ad", sealed, &out).ok());
  EXPECT_EQ(out, "moved");
}

TEST(AeadThreadTest, ConcurrentUseOfSeveralKeys) {
  // Every thread alternates between two keys on its one per-thread context: each call must use
  // its own object's key.
  Aead a(Key(32, 1)), b(Key(32, 2));
  NonceSequence nonces(5);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const std::string plain = Pattern(1000 + t);
      for (int i = 0; i < 300; ++i) {
        const Aead& mine = (i + t) % 2 ? a : b;
        const Aead& theirs = (i + t) % 2 ? b : a;
        std::string sealed, out;
        if (!mine.Seal(nonces.Next(), "ad", plain, &sealed).ok() ||
            !mine.Open("ad", sealed, &out).ok() || out != plain ||
            !theirs.Open("ad", sealed, &out).IsCorruption()) {
          ++failures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}

// ---------------------------------------------------------------------------------------------
// NameCipher

class NameCipherTest : public testing::Test {
 protected:
  NameCipherTest() : names_(Key(64, 0x10)) {}
  NameCipher names_;
};

TEST_F(NameCipherTest, Deterministic) {
  EXPECT_EQ(names_.Encrypt(7, "IMG0001.dcm"), names_.Encrypt(7, "IMG0001.dcm"));
  NameCipher same_key(Key(64, 0x10));
  EXPECT_EQ(same_key.Encrypt(7, "IMG0001.dcm"), names_.Encrypt(7, "IMG0001.dcm"));
}

TEST_F(NameCipherTest, OutputIsTagThenCiphertext) {
  std::string c = names_.Encrypt(7, "IMG0001.dcm");
  EXPECT_EQ(c.size(), kNameOverhead + 11);
  EXPECT_EQ(c.find("IMG0001"), std::string::npos);
}

TEST_F(NameCipherTest, ContextDependent) {
  EXPECT_NE(names_.Encrypt(7, "report.pdf"), names_.Encrypt(8, "report.pdf"));
  EXPECT_NE(names_.Encrypt(0, "report.pdf"), names_.Encrypt(uint64_t{1} << 63, "report.pdf"));
  EXPECT_NE(names_.Encrypt(7, "report.pdf"), names_.Encrypt(7, "report.pdg"));
  EXPECT_NE(names_.Encrypt(7, ""), names_.Encrypt(8, ""));
}

TEST_F(NameCipherTest, DecryptRoundTrip) {
  std::string binary;
  for (int i = 1; i < 256; ++i) binary += static_cast<char>(i);
  for (const std::string& name :
       {std::string("a"), std::string("IMG0001.dcm"), std::string(15, 'x'), std::string(16, 'y'),
        std::string(17, 'z'), std::string(255, 'n'), binary, std::string("Müller, Jörg")}) {
    std::string c = names_.Encrypt(99, name);
    std::string back = "stale";
    ASSERT_TRUE(names_.Decrypt(99, c, &back).ok()) << name;
    EXPECT_EQ(back, name);
  }
}

TEST_F(NameCipherTest, EmptyNameRoundTrip) {
  std::string c = names_.Encrypt(5, "");
  EXPECT_EQ(c.size(), kNameOverhead);
  std::string back = "stale";
  ASSERT_TRUE(names_.Decrypt(5, c, &back).ok());
  EXPECT_EQ(back, "");
  EXPECT_TRUE(names_.Decrypt(6, c, &back).IsCorruption());
  c[3] ^= 1;
  EXPECT_TRUE(names_.Decrypt(5, c, &back).IsCorruption());
}

TEST_F(NameCipherTest, TamperedIsCorruption) {
  const std::string c = names_.Encrypt(3, "series-12/instance-0042.dcm");
  for (size_t i = 0; i < c.size(); ++i) {
    std::string bad = c;
    bad[i] = static_cast<char>(bad[i] ^ 0x20);
    std::string back = "stale";
    Status s = names_.Decrypt(3, bad, &back);
    ASSERT_TRUE(s.IsCorruption()) << i << ": " << s.ToString();
    ASSERT_EQ(back, "");
  }
}

TEST_F(NameCipherTest, MovedToAnotherContextIsCorruption) {
  std::string back;
  EXPECT_TRUE(names_.Decrypt(4, names_.Encrypt(3, "study"), &back).IsCorruption());
}

TEST_F(NameCipherTest, TruncatedIsCorruption) {
  const std::string c = names_.Encrypt(3, "study");
  for (size_t len = 0; len < c.size(); ++len) {
    std::string back;
    ASSERT_TRUE(names_.Decrypt(3, c.substr(0, len), &back).IsCorruption()) << len;
  }
}

TEST_F(NameCipherTest, WrongKeyIsCorruption) {
  NameCipher other(Key(64, 0x11));
  std::string back;
  EXPECT_TRUE(other.Decrypt(3, names_.Encrypt(3, "study"), &back).IsCorruption());
}

TEST_F(NameCipherTest, ConcurrentUse) {
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  const std::string expected = names_.Encrypt(1, "shared");
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 300; ++i) {
        std::string name = "file-" + std::to_string(t) + "-" + std::to_string(i), back;
        if (!names_.Decrypt(t, names_.Encrypt(t, name), &back).ok() || back != name ||
            names_.Encrypt(1, "shared") != expected) {
          ++failures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}

// ---------------------------------------------------------------------------------------------
// FsKeys (HKDF derivation) - independent vectors

TEST(FsKeysTest, KnownAnswerDataKey) {
  auto keys = FsKeys::FromMaster(Key(32, 0));
  std::string out;
  ASSERT_TRUE(keys->aead().Seal(MakeNonce(7, 1), "ad", "strata chunk", &out).ok());
  EXPECT_EQ(Hex(out),
            "070000000100000000000000"
            "dc6ba56225c479d75a003071a9eeec0c6c43565ff27b607f5bd74efd");
}

TEST(FsKeysTest, KnownAnswerNameKey) {
  auto keys = FsKeys::FromMaster(Key(32, 0));
  EXPECT_EQ(Hex(keys->names().Encrypt(42, "IMG0001.dcm")),
            "6d8c2a64c93adc54ffca278555b57d4eb4a9e75d159658636d8cd2");
  EXPECT_EQ(Hex(keys->names().Encrypt(42, "")), "5567f3a38373d5f605f4af8f1a4b3909");
}

TEST(FsKeysTest, DifferentMastersGiveUnrelatedKeys) {
  auto a = FsKeys::FromMaster(Key(32, 0)), b = FsKeys::FromMaster(Key(32, 1));
  std::string sealed, out;
  ASSERT_TRUE(a->aead().Seal(MakeNonce(1, 1), "", "x", &sealed).ok());
  EXPECT_TRUE(b->aead().Open("", sealed, &out).IsCorruption());
  EXPECT_NE(a->names().Encrypt(1, "x"), b->names().Encrypt(1, "x"));
}

// ---------------------------------------------------------------------------------------------
// Keyring

constexpr std::array<unsigned char, 16> kUuid = {1, 2,  3,  4,  5,  6,  7,  8,
                                                 9, 10, 11, 12, 13, 14, 15, 16};

class KeyringTest : public testing::Test {
 protected:
  KeyringTest() : kek_(Key(32, 0x20)) {
    auto r = CreateKeyring(kek_, kUuid, &master_);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    keyring_ = std::move(r).value();
  }

  SecretBytes kek_;
  SecretBytes master_;
  std::string keyring_;
};

TEST_F(KeyringTest, CreateOpenRoundTrip) {
  ASSERT_EQ(keyring_.size(), kKeyringSize);
  EXPECT_EQ(keyring_.substr(0, 8), std::string("STRKEYR\0", 8));
  ASSERT_EQ(master_.size(), 32u);
  std::array<unsigned char, 16> uuid{};
  auto opened = OpenKeyring(kek_, keyring_, &uuid);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(Bytes(*opened), Bytes(master_));
  EXPECT_EQ(uuid, kUuid);
  EXPECT_TRUE(OpenKeyring(kek_, keyring_).ok());  // the uuid is optional
}

TEST_F(KeyringTest, MasterIsFreshEachTime) {
  SecretBytes other;
  auto r = CreateKeyring(kek_, kUuid, &other);
  ASSERT_TRUE(r.ok());
  EXPECT_NE(Bytes(other), Bytes(master_));
  EXPECT_NE(*r, keyring_);
}

TEST_F(KeyringTest, MasterNeverAppearsInTheKeyring) {
  EXPECT_EQ(keyring_.find(Bytes(master_)), std::string::npos);
}

TEST(KeyringGoldenTest, VersionOneKeyringOpens) {
  // Independent vector: KEK 20..3f, master 80..9f, uuid 00..0f, nonce c0..cb.
  const std::string golden = Unhex(
      "5354524b4559520001000000000102030405060708090a0b0c0d0e0fc0c1c2c3c4c5c6c7c8c9cacb08bba4b2"
      "13b26a7ca54d1718161536c193fa8c5729a927705f28b13a066ae965e1fe5b08e4181dd791263c0c4c5b4638");
  std::array<unsigned char, 16> uuid{};
  auto opened = OpenKeyring(Key(32, 0x20), golden, &uuid);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(Bytes(*opened), Bytes(Key(32, 0x80)));
  EXPECT_EQ(uuid,
            (std::array<unsigned char, 16>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}));
}

TEST_F(KeyringTest, WrongKekIsInvalidArgument) {
  auto r = OpenKeyring(Key(32, 0x21), keyring_);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsInvalidArgument()) << r.status().ToString();
  EXPECT_EQ(r.status().message(),
            "the key file does not unlock this filesystem (wrong key, or a damaged keyring)");
}

TEST_F(KeyringTest, KekOfWrongSizeIsInvalidArgument) {
  SecretBytes master;
  EXPECT_TRUE(CreateKeyring(Key(16, 0), kUuid, &master).status().IsInvalidArgument());
  EXPECT_TRUE(OpenKeyring(SecretBytes(), keyring_).status().IsInvalidArgument());
  EXPECT_TRUE(RewrapKeyring(kek_, Key(31, 0), keyring_).status().IsInvalidArgument());
}

TEST_F(KeyringTest, BadMagicIsCorruption) {
  std::string bad = keyring_;
  bad[0] = 'X';
  auto r = OpenKeyring(kek_, bad);
  EXPECT_TRUE(r.status().IsCorruption()) << r.status().ToString();
  EXPECT_NE(r.status().message().find("magic"), std::string::npos);
}

TEST_F(KeyringTest, UnknownVersionIsCorruption) {
  std::string bad = keyring_;
  bad[8] = 2;
  auto r = OpenKeyring(kek_, bad);
  EXPECT_TRUE(r.status().IsCorruption()) << r.status().ToString();
  EXPECT_NE(r.status().message().find("version 2"), std::string::npos);
}

TEST_F(KeyringTest, PassphraseKdfIsNotSupportedYet) {
  std::string bad = keyring_;
  bad[10] = 1;
  EXPECT_EQ(OpenKeyring(kek_, bad).status().code(), Status::Code::kNotSupported);
  bad[10] = 7;
  EXPECT_TRUE(OpenKeyring(kek_, bad).status().IsCorruption());
}

TEST_F(KeyringTest, TruncatedOrExtendedIsCorruption) {
  for (size_t len = 0; len < keyring_.size(); ++len) {
    auto r = OpenKeyring(kek_, keyring_.substr(0, len));
    ASSERT_TRUE(r.status().IsCorruption()) << len << ": " << r.status().ToString();
  }
  auto r = OpenKeyring(kek_, keyring_ + '\0');
  EXPECT_TRUE(r.status().IsCorruption());
  EXPECT_NE(r.status().message().find("89 bytes, expected 88"), std::string::npos)
      << r.status().message();
}

TEST_F(KeyringTest, FlippedByteIsReported) {
  for (size_t i = 0; i < keyring_.size(); ++i) {
    std::string bad = keyring_;
    bad[i] = static_cast<char>(bad[i] ^ 0x80);
    auto r = OpenKeyring(kek_, bad);
    ASSERT_FALSE(r.ok()) << i;
    if (i < 12) {
      EXPECT_TRUE(r.status().IsCorruption()) << i << ": " << r.status().ToString();
    } else {  // the uuid is authenticated as associated data; the rest is the sealed master
      EXPECT_TRUE(r.status().IsInvalidArgument()) << i << ": " << r.status().ToString();
    }
  }
}

TEST_F(KeyringTest, RewrapKeepsMasterAndRetiresOldKek) {
  SecretBytes new_kek = Key(32, 0x60);
  auto rewrapped = RewrapKeyring(kek_, new_kek, keyring_);
  ASSERT_TRUE(rewrapped.ok()) << rewrapped.status().ToString();
  ASSERT_EQ(rewrapped->size(), kKeyringSize);
  std::array<unsigned char, 16> uuid{};
  auto opened = OpenKeyring(new_kek, *rewrapped, &uuid);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(Bytes(*opened), Bytes(master_));
  EXPECT_EQ(uuid, kUuid);
  EXPECT_TRUE(OpenKeyring(kek_, *rewrapped).status().IsInvalidArgument());
}

TEST_F(KeyringTest, RewrapWithWrongOldKekFails) {
  auto r = RewrapKeyring(Key(32, 0x61), Key(32, 0x60), keyring_);
  EXPECT_TRUE(r.status().IsInvalidArgument()) << r.status().ToString();
}

// ---------------------------------------------------------------------------------------------
// LoadKeyFile

class LoadKeyFileTest : public testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = testing::TempDir() + "strata_crypto_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    for (const auto& f : files_) unlink(f.c_str());
    rmdir(dir_.c_str());
  }

  std::string Write(const std::string& name, std::string_view content, mode_t mode = 0600) {
    std::string path = dir_ + "/" + name;
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, mode);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
    close(fd);
    chmod(path.c_str(), mode);
    files_.push_back(path);
    return path;
  }

  std::string dir_;
  std::vector<std::string> files_;
};

TEST_F(LoadKeyFileTest, RawThirtyTwoBytes) {
  std::string raw = Bytes(Key(32, 0xf0));  // wraps around through 0x00: includes '\0' and '\n'
  auto k = LoadKeyFile(Write("raw.key", raw));
  ASSERT_TRUE(k.ok()) << k.status().ToString();
  EXPECT_EQ(Bytes(*k), raw);
}

TEST_F(LoadKeyFileTest, HexDigits) {
  const std::string hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
  const std::string expected = Bytes(Key(32, 0));
  for (const std::string& content : {hex, hex + "\n",
                                     std::string("000102030405060708090A0B0C0D0E0F"
                                                 "101112131415161718191A1B1C1D1E1F")}) {
    auto k = LoadKeyFile(Write("hex.key", content));
    ASSERT_TRUE(k.ok()) << k.status().ToString();
    EXPECT_EQ(Bytes(*k), expected);
  }
}

TEST_F(LoadKeyFileTest, WrongSizeNamesPathAndSize) {
  std::string path = Write("short.key", std::string(17, 'k'));
  auto k = LoadKeyFile(path);
  ASSERT_TRUE(k.status().IsInvalidArgument());
  EXPECT_EQ(k.status().message(),
            "key file " + path + ": expected 32 bytes or 64 hex digits, found 17 bytes");
}

TEST_F(LoadKeyFileTest, RawKeyWithNewlineIsRejected) {
  // `echo` of 32 characters into a file: 33 bytes. Guessing would risk a different key.
  auto k = LoadKeyFile(Write("echo.key", std::string(32, 'a') + "\n"));
  ASSERT_TRUE(k.status().IsInvalidArgument());
  EXPECT_NE(k.status().message().find("found 33 bytes"), std::string::npos);
}

TEST_F(LoadKeyFileTest, EmptyAndHugeFiles) {
  auto k = LoadKeyFile(Write("empty.key", ""));
  ASSERT_TRUE(k.status().IsInvalidArgument());
  EXPECT_NE(k.status().message().find("found 0 bytes"), std::string::npos);
  k = LoadKeyFile(Write("huge.key", std::string(10000, 'a')));
  ASSERT_TRUE(k.status().IsInvalidArgument());
  EXPECT_NE(k.status().message().find("found more than 4096 bytes"), std::string::npos)
      << k.status().message();
}

TEST_F(LoadKeyFileTest, NonHexIsInvalidArgumentWithoutEchoingContent) {
  const std::string path = Write("nonhex.key", std::string(63, 'a') + "#\n");
  auto k = LoadKeyFile(path);
  ASSERT_TRUE(k.status().IsInvalidArgument());
  // The rest of the message, after "key file <path>" (the path has random letters in it).
  const std::string after_path = k.status().message().substr(("key file " + path).size());
  EXPECT_EQ(after_path,
            ": expected 32 bytes or 64 hex digits, found 65 bytes that are not all hex digits");
}

TEST_F(LoadKeyFileTest, MissingFileIsNotFound) {
  std::string path = dir_ + "/absent.key";
  auto k = LoadKeyFile(path);
  ASSERT_TRUE(k.status().IsNotFound()) << k.status().ToString();
  EXPECT_NE(k.status().message().find(path), std::string::npos);
}

TEST_F(LoadKeyFileTest, DirectoryIsInvalidArgument) {
  auto k = LoadKeyFile(dir_);
  ASSERT_TRUE(k.status().IsInvalidArgument()) << k.status().ToString();
  EXPECT_NE(k.status().message().find(dir_), std::string::npos);
}

TEST_F(LoadKeyFileTest, GroupReadableKeyWarns) {
  std::string raw = Bytes(Key(32, 0x30));
  std::string path = Write("open.key", raw, 0644);
  testing::internal::CaptureStderr();
  auto k = LoadKeyFile(path);
  std::string err = testing::internal::GetCapturedStderr();
  ASSERT_TRUE(k.ok());
  EXPECT_NE(err.find(path), std::string::npos) << err;
  EXPECT_NE(err.find("0644"), std::string::npos) << err;
  EXPECT_EQ(err.find(raw), std::string::npos);

  testing::internal::CaptureStderr();
  ASSERT_TRUE(LoadKeyFile(Write("closed.key", raw, 0600)).ok());
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
}

}  // namespace
}  // namespace strata::crypto
