// S3Tier over libcurl. Each request borrows an easy handle from a small per-tier pool, so
// keep-alive connections are reused across calls and threads. Signing is libcurl's own SigV4
// (CURLOPT_AWS_SIGV4); two quirks of curl 7.88 shape the code:
//  - it signs the query string exactly as given, so every query is built here already encoded
//    and sorted by parameter name (the canonical form the server recomputes);
//  - it signs the x-amz-content-sha256 header it is given instead of hashing the body itself,
//    so every request carries one. We always send the real SHA-256 (never UNSIGNED-PAYLOAD):
//    radosgw and AWS check it against the body and refuse a body damaged on the way.
#include "tiering/s3_tier.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <strings.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "base/env.h"
#include "base/logging.h"

namespace strata::tiering {
namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kMinPartSize = 5 * kMiB;   // S3's floor for every part but the last
constexpr uint64_t kMaxPutSize = 5ull << 30;  // S3's ceiling for one PUT and for one part
constexpr uint64_t kMaxParts = 10000;
constexpr int64_t kBackoffBaseMs = 100;
constexpr int64_t kBackoffCapMs = 5000;
constexpr size_t kMaxResponseBody = 16 << 20;  // listings, upload ids; error documents are cut
constexpr size_t kMaxErrorBody = 64 << 10;
constexpr size_t kMaxIdleHandles = 64;
constexpr size_t kHashChunk = 1 << 20;
constexpr char kEmptySha256[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

using Params = std::vector<std::pair<std::string, std::string>>;

// ---------------------------------------------------------------------------------------------
// Encoding: SigV4's URI encoding, query strings, a tag extractor for S3's XML documents.

bool IsUnreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.' || c == '~';
}

// Every byte but A-Z a-z 0-9 - _ . ~ as %XX (upper-case hex), as SigV4 canonicalises it;
// '/' stays when it separates the segments of an object key.
std::string UriEncode(std::string_view s, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (IsUnreserved(c) || (keep_slash && c == '/')) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// "a=1&b=2": encoded and sorted by name, because curl 7.88 signs the query as given.
std::string Query(Params params) {
  std::sort(params.begin(), params.end());
  std::string out;
  for (const auto& [k, v] : params) {
    if (!out.empty()) out += '&';
    out += UriEncode(k, false) + '=' + UriEncode(v, false);
  }
  return out;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    *out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    *out += static_cast<char>(0xC0 | (cp >> 6));
    *out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    *out += static_cast<char>(0xE0 | (cp >> 12));
    *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    *out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    *out += static_cast<char>(0xF0 | (cp >> 18));
    *out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    *out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Decodes the five predefined entities and numeric references; anything else is kept as is.
std::string XmlDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    size_t semi;
    if (s[i] != '&' || (semi = s.find(';', i)) == std::string_view::npos || semi - i > 10) {
      out += s[i];
      continue;
    }
    std::string_view ent = s.substr(i + 1, semi - i - 1);
    if (ent == "amp") {
      out += '&';
    } else if (ent == "lt") {
      out += '<';
    } else if (ent == "gt") {
      out += '>';
    } else if (ent == "quot") {
      out += '"';
    } else if (ent == "apos") {
      out += '\'';
    } else if (ent.size() > 1 && ent[0] == '#') {
      bool hex = ent[1] == 'x' || ent[1] == 'X';
      std::string_view digits = ent.substr(hex ? 2 : 1);
      uint32_t cp = 0;
      auto [end, ec] =
          std::from_chars(digits.data(), digits.data() + digits.size(), cp, hex ? 16 : 10);
      if (ec != std::errc() || end != digits.data() + digits.size() || cp > 0x10FFFF) {
        out += s[i];
        continue;
      }
      AppendUtf8(cp, &out);
    } else {
      out += s[i];
      continue;
    }
    i = semi;
  }
  return out;
}

std::string XmlEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// The raw content of every <tag>...</tag> in `xml`, in order. Enough for S3's responses: no
// attributes on the elements we read, and no element nested in one of the same name.
std::vector<std::string_view> XmlElements(std::string_view xml, std::string_view tag) {
  const std::string open = "<" + std::string(tag) + ">";
  const std::string close = "</" + std::string(tag) + ">";
  std::vector<std::string_view> out;
  size_t pos = 0;
  while ((pos = xml.find(open, pos)) != std::string_view::npos) {
    size_t start = pos + open.size();
    size_t end = xml.find(close, start);
    if (end == std::string_view::npos) break;
    out.push_back(xml.substr(start, end - start));
    pos = end + close.size();
  }
  return out;
}

// The decoded text of the first <tag>, or "" when there is none.
std::string XmlText(std::string_view xml, std::string_view tag) {
  auto elements = XmlElements(xml, tag);
  return elements.empty() ? std::string() : XmlDecode(elements[0]);
}

// ---------------------------------------------------------------------------------------------
// Endpoint, URLs and validation.

struct Endpoint {
  std::string scheme;     // "http" or "https"
  std::string authority;  // "host", "host:port", "[v6]:port"
  std::string host;       // without the port
};

bool ParseEndpoint(std::string_view s, Endpoint* out) {
  for (std::string_view scheme : {"http", "https"}) {
    std::string prefix = std::string(scheme) + "://";
    if (s.substr(0, prefix.size()) != prefix) continue;
    std::string_view rest = s.substr(prefix.size());
    if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
    if (rest.empty() || rest.find_first_of("/?#@ \t") != std::string_view::npos) return false;
    for (unsigned char c : rest)
      if (c < 0x21 || c > 0x7e) return false;
    out->scheme = scheme;
    out->authority = rest;
    size_t colon = rest.rfind(':');
    size_t bracket = rest.rfind(']');
    out->host =
        (colon == std::string_view::npos || (bracket != std::string_view::npos && bracket > colon))
            ? std::string(rest)
            : std::string(rest.substr(0, colon));
    return !out->host.empty();
  }
  return false;
}

bool IsIpLiteral(const std::string& host) {
  return host.front() == '[' || host.find_first_not_of("0123456789.") == std::string::npos;
}

// "https://host/bucket" (path style) or "https://bucket.host" (virtual-host style).
std::string BucketBase(const S3Options& o) {
  Endpoint e;
  if (!ParseEndpoint(o.endpoint, &e)) {
    std::string base = o.endpoint;
    while (!base.empty() && base.back() == '/') base.pop_back();
    return base + "/" + UriEncode(o.bucket, false);
  }
  if (o.path_style) return e.scheme + "://" + e.authority + "/" + UriEncode(o.bucket, false);
  return e.scheme + "://" + o.bucket + "." + e.authority;
}

bool HasControlChar(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; });
}

bool OnlyChars(std::string_view s, std::string_view allowed_punct, bool lower_only) {
  return std::all_of(s.begin(), s.end(), [&](char c) {
    return (c >= 'a' && c <= 'z') || (!lower_only && c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || allowed_punct.find(c) != std::string_view::npos;
  });
}

// Keys name segments, so the rules are the directory tier's: a key must also be a valid
// relative path, which keeps objects movable between tiers.
bool ValidKey(std::string_view key) {
  if (key.empty() || key.front() == '/' || key.back() == '/' || key.size() > 900 ||
      HasControlChar(key))
    return false;
  size_t start = 0;
  while (start <= key.size()) {
    size_t end = key.find('/', start);
    if (end == std::string_view::npos) end = key.size();
    std::string_view seg = key.substr(start, end - start);
    if (seg.empty() || seg == "." || seg == "..") return false;
    start = end + 1;
  }
  return true;
}

Status ValidateOptions(const S3Options& o) {
  if (o.name.empty()) return Status::InvalidArgument("S3 tier: name is empty");
  auto bad = [&](std::string_view option, const std::string& why) {
    return Status::InvalidArgument(fmt::format("S3 tier {}: {} {}", o.name, option, why));
  };
  Endpoint e;
  if (!ParseEndpoint(o.endpoint, &e))
    return bad("endpoint", fmt::format("'{}' is not http(s)://host[:port]", o.endpoint));
  if (o.region.empty() || !OnlyChars(o.region, "-_", false))
    return bad("region", fmt::format("'{}' is not a region name such as us-east-1", o.region));
  if (o.path_style) {
    if (o.bucket.empty() || o.bucket.size() > 255 || !OnlyChars(o.bucket, "-_.", false))
      return bad("bucket", fmt::format("'{}' is not a bucket name", o.bucket));
  } else {
    if (o.bucket.size() < 3 || o.bucket.size() > 63 || !OnlyChars(o.bucket, "-.", true) ||
        o.bucket.front() == '-' || o.bucket.front() == '.' || o.bucket.back() == '-' ||
        o.bucket.back() == '.')
      return bad("bucket",
                 fmt::format("'{}' is not a DNS-compatible bucket name, which virtual-host "
                             "style (path_style = false) needs",
                             o.bucket));
    if (IsIpLiteral(e.host))
      return bad("path_style", fmt::format("= false needs a DNS name in endpoint, not the "
                                           "address '{}'",
                                           e.host));
  }
  if (o.prefix.size() > 512 || HasControlChar(o.prefix) ||
      (!o.prefix.empty() && o.prefix.front() == '/'))
    return bad("prefix",
               fmt::format("'{}' must be a relative key prefix such as \"pacs/\"", o.prefix));
  if (!OnlyChars(o.storage_class, "_", false) ||
      std::any_of(o.storage_class.begin(), o.storage_class.end(),
                  [](char c) { return c >= 'a' && c <= 'z'; }))
    return bad("storage_class",
               fmt::format("'{}' is not a storage class such as STANDARD_IA", o.storage_class));
  // Never quote the credentials themselves.
  if (o.credentials.access_key.empty()) return bad("credentials", "have no access key");
  if (o.credentials.secret_key.empty()) return bad("credentials", "have no secret key");
  if (HasControlChar(o.credentials.access_key) || HasControlChar(o.credentials.secret_key))
    return bad("credentials", "contain a control character (a stray newline?)");
  if (!o.ca_file.empty()) {
    Result<bool> exists = Env::Default()->FileExists(o.ca_file);
    if (!exists.ok() || !*exists)
      return bad("ca_file", fmt::format("'{}' does not exist or cannot be read", o.ca_file));
  }
  if (o.connect_timeout_ms <= 0) return bad("connect_timeout_ms", "must be positive");
  if (o.request_timeout_ms <= 0) return bad("request_timeout_ms", "must be positive");
  if (o.max_attempts < 1 || o.max_attempts > 100) return bad("max_attempts", "must be 1..100");
  if (o.part_size < kMinPartSize || o.part_size > kMaxPutSize)
    return bad("part_size", fmt::format("{} is outside 5 MiB..5 GiB", o.part_size));
  if (o.multipart_threshold == 0 || o.multipart_threshold > kMaxPutSize)
    return bad("multipart_threshold", fmt::format("{} is outside 1..5 GiB", o.multipart_threshold));
  return Status::OK();
}

// ---------------------------------------------------------------------------------------------
// Payloads and hashing.

// A request body: bytes in memory, or a range of a local file that is read while curl sends
// it (a 32 MiB segment is never copied into memory). Re-readable, so a retry resends it.
struct Payload {
  std::string_view bytes;
  File* file = nullptr;
  uint64_t offset = 0;
  uint64_t size = 0;  // of the file range

  uint64_t length() const { return file != nullptr ? size : bytes.size(); }

  // Reads n bytes at pos (relative to the payload); a file that shrank is an error.
  Status Read(uint64_t pos, size_t n, char* buf) const {
    if (file == nullptr) {
      std::memcpy(buf, bytes.data() + pos, n);
      return Status::OK();
    }
    size_t got = 0;
    RETURN_IF_ERROR(file->Read(offset + pos, n, buf, &got));
    if (got != n)
      return Status::IOError(fmt::format("{} shrank while it was being uploaded", file->path()), 0);
    return Status::OK();
  }
};

Result<std::string> Sha256Hex(const Payload& p) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (ctx == nullptr || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1)
    return Status::IOError("SHA-256: cannot initialise OpenSSL's digest");
  if (p.file == nullptr) {
    EVP_DigestUpdate(ctx.get(), p.bytes.data(), p.bytes.size());
  } else {
    std::string buf(std::min<uint64_t>(kHashChunk, p.size), '\0');
    for (uint64_t pos = 0; pos < p.size; pos += buf.size()) {
      size_t n = std::min<uint64_t>(buf.size(), p.size - pos);
      RETURN_IF_ERROR(p.Read(pos, n, buf.data()));
      EVP_DigestUpdate(ctx.get(), buf.data(), n);
    }
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) hex += fmt::format("{:02x}", md[i]);
  return hex;
}

// ---------------------------------------------------------------------------------------------
// HTTP requests.

Status CurlGlobalInit() {
  // A function-local static: initialised exactly once, thread-safely. Never cleaned up: the
  // process may hold tiers until it exits, and other code may use curl too.
  static const CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (rc != CURLE_OK)
    return Status::IOError(std::string("curl_global_init: ") + curl_easy_strerror(rc));
  return Status::OK();
}

// Idle easy handles of one tier. A handle keeps its connections open between requests, so a
// request that takes any idle handle usually finds a warm keep-alive connection.
class HandlePool {
 public:
  HandlePool() = default;
  HandlePool(const HandlePool&) = delete;
  HandlePool& operator=(const HandlePool&) = delete;
  ~HandlePool() {
    for (CURL* h : idle_) curl_easy_cleanup(h);
  }

  // nullptr only when curl cannot allocate a handle.
  CURL* Take() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!idle_.empty()) {
        CURL* h = idle_.back();
        idle_.pop_back();
        return h;
      }
    }
    return curl_easy_init();
  }

  void Return(CURL* h) {
    curl_easy_reset(h);  // forgets the options (and credentials), keeps the connections
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (idle_.size() < kMaxIdleHandles) {
        idle_.push_back(h);
        return;
      }
    }
    curl_easy_cleanup(h);
  }

 private:
  std::mutex mu_;
  std::vector<CURL*> idle_;  // guarded by mu_
};

struct Request {
  const char* method = "GET";  // GET, HEAD, PUT, POST or DELETE
  std::string url;
  std::vector<std::string> headers;  // besides x-amz-content-sha256
  const Payload* payload = nullptr;  // PUT and POST
  std::string payload_sha256 = kEmptySha256;
  std::string* sink = nullptr;  // where a 2xx body goes (GET of an object); else Response::body
  uint64_t sink_limit = 0;      // a longer 2xx body is an error
};

struct Response {
  long http_status = 0;
  std::string body;  // a 2xx body without a sink, or the start of an error document
  std::string etag;
  int64_t content_length = -1;  // of a HEAD
  bool overflow = false;        // the 2xx body was longer than allowed
};

// State shared with curl's callbacks during one attempt.
struct Transfer {
  CURL* curl;
  const Request* req;
  Response* resp;
  uint64_t read_pos = 0;
  Status read_status;
};

size_t WriteCallback(char* data, size_t size, size_t nmemb, void* arg) {
  auto* t = static_cast<Transfer*>(arg);
  size_t n = size * nmemb;
  long code = 0;
  curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &code);
  if (code < 200 || code >= 300) {  // an error document: keep its start, which has the code
    size_t room = kMaxErrorBody - std::min(kMaxErrorBody, t->resp->body.size());
    t->resp->body.append(data, std::min(n, room));
    return n;
  }
  std::string* dst = t->req->sink != nullptr ? t->req->sink : &t->resp->body;
  uint64_t limit = t->req->sink != nullptr ? t->req->sink_limit : kMaxResponseBody;
  if (dst->size() + n > limit) {
    t->resp->overflow = true;
    return 0;  // CURLE_WRITE_ERROR
  }
  dst->append(data, n);
  return n;
}

size_t HeaderCallback(char* data, size_t size, size_t nmemb, void* arg) {
  auto* t = static_cast<Transfer*>(arg);
  std::string_view line(data, size * nmemb);
  if (line.size() > 5 && strncasecmp(line.data(), "etag:", 5) == 0) {
    line.remove_prefix(5);
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    while (!line.empty() && (line.back() == '\r' || line.back() == '\n' || line.back() == ' '))
      line.remove_suffix(1);
    t->resp->etag = line;
  }
  return size * nmemb;
}

size_t ReadCallback(char* buf, size_t size, size_t nmemb, void* arg) {
  auto* t = static_cast<Transfer*>(arg);
  const Payload& p = *t->req->payload;
  size_t n = std::min<uint64_t>(size * nmemb, p.length() - t->read_pos);
  if (n == 0) return 0;
  t->read_status = p.Read(t->read_pos, n, buf);
  if (!t->read_status.ok()) return CURL_READFUNC_ABORT;
  t->read_pos += n;
  return n;
}

int SeekCallback(void* arg, curl_off_t offset, int origin) {
  auto* t = static_cast<Transfer*>(arg);
  if (origin != SEEK_SET || offset < 0 || static_cast<uint64_t>(offset) > t->req->payload->length())
    return CURL_SEEKFUNC_FAIL;
  t->read_pos = static_cast<uint64_t>(offset);
  return CURL_SEEKFUNC_OK;
}

// The Status of a completed exchange. Unavailable means "worth another attempt". Messages are
// bare details; the caller adds the tier, operation and key.
Status HttpStatus(const Response& r, const S3Options& o) {
  long s = r.http_status;
  // CompleteMultipartUpload may fail after a 200 with an <Error> document as its body.
  bool error_document = r.body.find("<Error>") != std::string::npos;
  if (s >= 200 && s < 300 && !error_document) return Status::OK();
  std::string code = XmlText(r.body, "Code");
  std::string detail = fmt::format("HTTP {}{}{}", s, code.empty() ? "" : " ", code);
  std::string message = XmlText(r.body, "Message");
  if (!message.empty() && !HasControlChar(message)) detail += ": " + message.substr(0, 200);

  if (code == "NoSuchBucket")
    return Status::InvalidArgument(
        fmt::format("bucket '{}' does not exist ({})", o.bucket, detail));
  if (s == 404) return Status::NotFound(fmt::format("no such object ({})", detail));
  if (s == 416 || code == "InvalidRange")
    return Status::Corruption(
        fmt::format("the range runs past the end of the object ({})", detail));
  if (code == "RequestTimeTooSkewed")
    return Status::InvalidArgument(
        fmt::format("the server refused this machine's clock; is NTP running? ({})", detail));
  if (code == "AccessDenied")
    return Status::InvalidArgument(fmt::format(
        "access denied: the credentials lack permission on bucket '{}' ({})", o.bucket, detail));
  if (s == 403 || s == 401 || code == "SignatureDoesNotMatch" || code == "InvalidAccessKeyId")
    return Status::InvalidArgument(fmt::format("the credentials were refused ({})", detail));
  if (s >= 500 || s == 429 || s == 408 || code == "SlowDown" || code == "RequestTimeout" ||
      code == "InternalError" || code == "XAmzContentSHA256Mismatch" || code == "BadDigest")
    return Status::Unavailable(detail);
  if (s == 400) {
    // The one free-form thing we send is the storage class; radosgw calls an unknown one
    // InvalidArgument, AWS InvalidStorageClass.
    if (!o.storage_class.empty() && (code == "InvalidStorageClass" || code == "InvalidArgument"))
      detail += fmt::format("; is storage_class '{}' defined on the server?", o.storage_class);
    return Status::InvalidArgument(fmt::format("the server refused the request ({})", detail));
  }
  return Status::IOError(detail, 0);  // errno 0: no syscall failed
}

Status CurlStatus(CURL* h, CURLcode rc, const char* errbuf, const Transfer& t, const S3Options& o) {
  if (!t.read_status.ok()) return t.read_status;  // the local file, not the network
  if (rc == CURLE_WRITE_ERROR && t.resp->overflow)
    return Status::Corruption(fmt::format(
        "the response is longer than the {} bytes asked for (HTTP {})",
        t.req->sink != nullptr ? t.req->sink_limit : kMaxResponseBody, t.resp->http_status));
  std::string detail = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc);
  switch (rc) {
    case CURLE_COULDNT_CONNECT: {
      long os_errno = 0;
      curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os_errno);
      if (os_errno != 0)
        detail = fmt::format("cannot connect: {}", std::strerror(static_cast<int>(os_errno)));
      return Status::Unavailable(detail);
    }
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return Status::Unavailable(detail);
    case CURLE_PEER_FAILED_VERIFICATION:
      return Status::IOError(
          fmt::format("TLS: the server's certificate is not trusted ({}); a private CA goes in "
                      "ca_file",
                      detail),
          0);
    case CURLE_SSL_CACERT_BADFILE:
      return Status::InvalidArgument(fmt::format("ca_file '{}': {}", o.ca_file, detail));
    default:
      return Status::IOError(detail, 0);
  }
}

// ---------------------------------------------------------------------------------------------

class S3Tier final : public Tier {
 public:
  explicit S3Tier(S3Options options)
      : options_(std::move(options)),
        sigv4_("aws:amz:" + options_.region + ":s3"),
        bucket_base_(BucketBase(options_)),
        where_(fmt::format("tier {} ({} bucket {})", options_.name, options_.endpoint,
                           options_.bucket)) {}

  const std::string& name() const override { return options_.name; }
  Status PutFile(const std::string& key, const std::string& local_path) override;
  Status Put(const std::string& key, std::string_view data) override;
  Status Get(const std::string& key, uint64_t offset, uint64_t length, std::string* out) override;
  Result<uint64_t> Size(const std::string& key) override;
  Status Delete(const std::string& key) override;
  Status List(const std::string& prefix, std::vector<ObjectInfo>* out) override;

 private:
  std::string ObjectUrl(std::string_view key, const std::string& query = "") const {
    return bucket_base_ + "/" + UriEncode(options_.prefix + std::string(key), true) +
           (query.empty() ? "" : "?" + query);
  }
  std::string BucketUrl(const std::string& query) const {
    return bucket_base_ + (options_.path_style ? "" : "/") + (query.empty() ? "" : "?" + query);
  }
  // "tier archive (https://s3.example.org bucket b): GET seg/1"
  std::string Context(std::string_view op, std::string_view key) const {
    return key.empty() ? fmt::format("{}: {}", where_, op)
                       : fmt::format("{}: {} {}", where_, op, key);
  }
  Status CheckKey(std::string_view op, const std::string& key) const {
    if (ValidKey(key)) return Status::OK();
    return Status::InvalidArgument(fmt::format(
        "{}: {} '{}': not a valid key (empty, absolute, '.'/'..'/empty segments or control "
        "characters)",
        where_, op, key));
  }

  // One request, retried while the failure is transient. Errors carry Context(op, key).
  Status Call(std::string_view op, std::string_view key, const Request& req, Response* resp);
  Status Attempt(const Request& req, Response* resp);
  Status PutPayload(const std::string& key, const Payload& payload);
  Status PutMultipart(const std::string& key, File* file, uint64_t size);
  Status UploadParts(const std::string& key, File* file, uint64_t size,
                     const std::string& upload_id);

  const S3Options options_;
  const std::string sigv4_;        // CURLOPT_AWS_SIGV4: "aws:amz:<region>:s3"
  const std::string bucket_base_;  // BucketBase(options_)
  const std::string where_;        // "tier NAME (ENDPOINT bucket BUCKET)"
  HandlePool pool_;
};

std::chrono::milliseconds Backoff(int attempt) {
  // Exponential with "equal jitter": half the delay is fixed, half random, so readers that
  // failed together do not all come back at the same instant.
  int64_t delay = std::min(kBackoffCapMs, kBackoffBaseMs << std::min(attempt - 1, 16));
  thread_local std::minstd_rand rng(std::random_device{}());
  return std::chrono::milliseconds(delay / 2 +
                                   std::uniform_int_distribution<int64_t>(0, delay / 2)(rng));
}

Status S3Tier::Call(std::string_view op, std::string_view key, const Request& req, Response* resp) {
  for (int attempt = 1;; ++attempt) {
    Status s = Attempt(req, resp);
    if (!s.IsUnavailable()) return s.WithContext(Context(op, key));
    if (attempt >= options_.max_attempts)
      return Status::Unavailable(fmt::format("{}: {} after {} attempt{}", Context(op, key),
                                             s.message(), attempt, attempt == 1 ? "" : "s"));
    std::chrono::milliseconds delay = Backoff(attempt);
    log::Debug("{}: {}; attempt {} of {} in {} ms", Context(op, key), s.message(), attempt + 1,
               options_.max_attempts, delay.count());
    std::this_thread::sleep_for(delay);
  }
}

Status S3Tier::Attempt(const Request& req, Response* resp) {
  *resp = Response();
  if (req.sink != nullptr) req.sink->clear();
  CURL* h = pool_.Take();
  if (h == nullptr) return Status::IOError("curl_easy_init failed");
  struct Lease {
    HandlePool* pool;
    CURL* handle;
    ~Lease() { pool->Return(handle); }
  } lease{&pool_, h};

  curl_slist* list = nullptr;
  auto add = [&list](const std::string& header) {
    curl_slist* l = curl_slist_append(list, header.c_str());
    if (l != nullptr) list = l;
    return l != nullptr;
  };
  // Never "Expect:" (to turn off 100-continue): curl 7.88 signs that header without sending it.
  bool headers_ok = add("x-amz-content-sha256: " + req.payload_sha256);
  for (const std::string& header : req.headers) headers_ok = headers_ok && add(header);
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> headers(list, curl_slist_free_all);
  if (!headers_ok) return Status::IOError("out of memory building the request headers");

  Transfer t{h, &req, resp, 0, Status::OK()};
  char errbuf[CURL_ERROR_SIZE] = {};
  const uint64_t body_bytes = req.payload != nullptr ? req.payload->length() : req.sink_limit;
  // The per-attempt timeout grows by 1 ms per KiB of body: a floor of ~1 MiB/s, so a large
  // part on a slow link is not cut off while a tier that does not answer still fails fast.
  const int64_t timeout_ms = options_.request_timeout_ms + static_cast<int64_t>(body_bytes >> 10);

  curl_easy_setopt(h, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);  // keys are signed exactly as sent
  curl_easy_setopt(h, CURLOPT_AWS_SIGV4, sigv4_.c_str());
  curl_easy_setopt(h, CURLOPT_USERNAME, options_.credentials.access_key.c_str());
  curl_easy_setopt(h, CURLOPT_PASSWORD, options_.credentials.secret_key.c_str());
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connect_timeout_ms));
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_ms));
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 256L << 10);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, WriteCallback);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, HeaderCallback);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, options_.verify_tls ? 1L : 0L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, options_.verify_tls ? 2L : 0L);
  if (!options_.ca_file.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, options_.ca_file.c_str());

  const std::string_view method = req.method;
  if (method == "HEAD") {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  } else if (method == "PUT" || method == "POST") {
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, 1L << 20);
    curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE,
                     static_cast<curl_off_t>(req.payload != nullptr ? req.payload->length() : 0));
    curl_easy_setopt(h, CURLOPT_READFUNCTION, ReadCallback);
    curl_easy_setopt(h, CURLOPT_READDATA, &t);
    curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, SeekCallback);
    curl_easy_setopt(h, CURLOPT_SEEKDATA, &t);
    if (method == "POST") curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "POST");
  } else if (method == "DELETE") {
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "DELETE");
  }

  CURLcode rc = curl_easy_perform(h);
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->http_status);
  if (rc != CURLE_OK) return CurlStatus(h, rc, errbuf, t, options_);
  if (method == "HEAD") {
    curl_off_t length = -1;
    curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
    resp->content_length = length;
  }
  return HttpStatus(*resp, options_);
}

Status S3Tier::Put(const std::string& key, std::string_view data) {
  RETURN_IF_ERROR(CheckKey("PUT", key));
  Payload payload;
  payload.bytes = data;
  return PutPayload(key, payload);
}

Status S3Tier::PutFile(const std::string& key, const std::string& local_path) {
  RETURN_IF_ERROR(CheckKey("PUT", key));
  Result<std::unique_ptr<File>> file = Env::Default()->OpenFile(local_path, OpenMode::kReadOnly);
  if (!file.ok()) return file.status().WithContext(Context("PUT", key));
  Result<uint64_t> size = (*file)->Size();
  if (!size.ok()) return size.status().WithContext(Context("PUT", key));
  if (*size > options_.multipart_threshold) return PutMultipart(key, file->get(), *size);
  Payload payload;
  payload.file = file->get();
  payload.size = *size;
  return PutPayload(key, payload);
}

Status S3Tier::PutPayload(const std::string& key, const Payload& payload) {
  if (payload.length() > kMaxPutSize)
    return Status::InvalidArgument(fmt::format("{}: {} bytes is more than one S3 PUT takes (5 GiB)",
                                               Context("PUT", key), payload.length()));
  Result<std::string> sha = Sha256Hex(payload);
  if (!sha.ok()) return sha.status().WithContext(Context("PUT", key));
  Request req;
  req.method = "PUT";
  req.url = ObjectUrl(key);
  req.payload = &payload;
  req.payload_sha256 = std::move(sha).value();
  if (!options_.storage_class.empty())
    req.headers.push_back("x-amz-storage-class: " + options_.storage_class);
  Response resp;
  return Call("PUT", key, req, &resp);
}

Status S3Tier::PutMultipart(const std::string& key, File* file, uint64_t size) {
  Request create;
  create.method = "POST";
  create.url = ObjectUrl(key, "uploads=");
  Payload empty;
  create.payload = &empty;
  if (!options_.storage_class.empty())
    create.headers.push_back("x-amz-storage-class: " + options_.storage_class);
  Response resp;
  RETURN_IF_ERROR(Call("CreateMultipartUpload", key, create, &resp));
  const std::string upload_id = XmlText(resp.body, "UploadId");
  if (upload_id.empty())
    return Status::IOError(
        fmt::format("{}: no UploadId in the response", Context("CreateMultipartUpload", key)), 0);

  Status s = UploadParts(key, file, size, upload_id);
  if (!s.ok()) {
    // Best effort: the parts of an upload that is neither completed nor aborted use space
    // until a lifecycle rule (AbortIncompleteMultipartUpload) removes them.
    Request abort;
    abort.method = "DELETE";
    abort.url = ObjectUrl(key, Query({{"uploadId", upload_id}}));
    Status a = Call("AbortMultipartUpload", key, abort, &resp);
    if (!a.ok() && !a.IsNotFound())
      log::Warn("{}; its parts stay in the bucket until a lifecycle rule removes them",
                a.ToString());
  }
  return s;
}

Status S3Tier::UploadParts(const std::string& key, File* file, uint64_t size,
                           const std::string& upload_id) {
  // Raised when needed so that no object needs more than S3's 10000 parts.
  const uint64_t part_size = std::max(options_.part_size, (size + kMaxParts - 1) / kMaxParts);
  std::string complete = "<CompleteMultipartUpload>";
  int number = 0;
  for (uint64_t offset = 0; offset < size; offset += part_size) {
    ++number;
    const std::string op = fmt::format("UploadPart {}", number);
    Payload part;
    part.file = file;
    part.offset = offset;
    part.size = std::min(part_size, size - offset);
    Result<std::string> sha = Sha256Hex(part);
    if (!sha.ok()) return sha.status().WithContext(Context(op, key));
    Request req;
    req.method = "PUT";
    req.url =
        ObjectUrl(key, Query({{"partNumber", std::to_string(number)}, {"uploadId", upload_id}}));
    req.payload = &part;
    req.payload_sha256 = std::move(sha).value();
    Response resp;
    RETURN_IF_ERROR(Call(op, key, req, &resp));
    if (resp.etag.empty())
      return Status::IOError(fmt::format("{}: no ETag in the response", Context(op, key)), 0);
    complete += fmt::format("<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>", number,
                            XmlEscape(resp.etag));
  }
  complete += "</CompleteMultipartUpload>";

  Payload body;
  body.bytes = complete;
  Result<std::string> sha = Sha256Hex(body);
  if (!sha.ok()) return sha.status().WithContext(Context("CompleteMultipartUpload", key));
  Request req;
  req.method = "POST";
  req.url = ObjectUrl(key, Query({{"uploadId", upload_id}}));
  req.payload = &body;
  req.payload_sha256 = std::move(sha).value();
  // The ETag of the completed object is not checked: radosgw returns an empty one here. The
  // part checksums (x-amz-content-sha256) already protected every byte on the way.
  Response resp;
  return Call("CompleteMultipartUpload", key, req, &resp);
}

Status S3Tier::Get(const std::string& key, uint64_t offset, uint64_t length, std::string* out) {
  out->clear();
  RETURN_IF_ERROR(CheckKey("GET", key));
  if (length == 0) {  // no byte range to ask for: the object must exist and reach `offset`
    ASSIGN_OR_RETURN(uint64_t size, Size(key));
    if (offset > size)
      return Status::Corruption(fmt::format("{}: offset {} is past the end ({} bytes)",
                                            Context("GET", key), offset, size));
    return Status::OK();
  }
  Request req;
  req.url = ObjectUrl(key);
  req.headers.push_back(fmt::format("Range: bytes={}-{}", offset, offset + length - 1));
  req.sink = out;
  req.sink_limit = length;
  out->reserve(std::min<uint64_t>(length, 256 * kMiB));
  Response resp;
  RETURN_IF_ERROR(Call("GET", key, req, &resp));
  // 206 is a served range; a 200 is the whole object, right only when it is exactly the range.
  if (resp.http_status != 206 && !(resp.http_status == 200 && offset == 0))
    return Status::Corruption(fmt::format("{}: offset {} length {}: HTTP {} instead of 206",
                                          Context("GET", key), offset, length, resp.http_status));
  if (out->size() != length)
    return Status::Corruption(
        fmt::format("{}: offset {} length {}: only {} bytes came back (the object is shorter)",
                    Context("GET", key), offset, length, out->size()));
  return Status::OK();
}

Result<uint64_t> S3Tier::Size(const std::string& key) {
  RETURN_IF_ERROR(CheckKey("HEAD", key));
  Request req;
  req.method = "HEAD";
  req.url = ObjectUrl(key);
  Response resp;
  Status s = Call("HEAD", key, req, &resp);
  if (s.IsNotFound()) {
    // A HEAD answer has no body, so a missing bucket looks like a missing object. Tell them
    // apart: "every object is gone" must read as a configuration error, not as data loss.
    Request bucket;
    bucket.method = "HEAD";
    bucket.url = BucketUrl("");
    Response bresp;
    if (Call("HEAD bucket", "", bucket, &bresp).IsNotFound())
      return Status::InvalidArgument(
          fmt::format("{}: bucket '{}' does not exist", Context("HEAD", key), options_.bucket));
    return s;
  }
  RETURN_IF_ERROR(s);
  if (resp.content_length < 0)
    return Status::IOError(
        fmt::format("{}: no Content-Length in the response", Context("HEAD", key)), 0);
  return static_cast<uint64_t>(resp.content_length);
}

Status S3Tier::Delete(const std::string& key) {
  RETURN_IF_ERROR(CheckKey("DELETE", key));
  Request req;
  req.method = "DELETE";
  req.url = ObjectUrl(key);
  Response resp;
  Status s = Call("DELETE", key, req, &resp);
  return s.IsNotFound() ? Status::OK() : s;  // a missing bucket is InvalidArgument, not this
}

Status S3Tier::List(const std::string& prefix, std::vector<ObjectInfo>* out) {
  out->clear();
  const std::string full_prefix = options_.prefix + prefix;
  std::string token;
  do {
    Params params = {{"list-type", "2"}, {"prefix", full_prefix}};
    if (!token.empty()) params.emplace_back("continuation-token", token);
    Request req;
    req.url = BucketUrl(Query(std::move(params)));
    Response resp;
    RETURN_IF_ERROR(Call("LIST", prefix, req, &resp));
    for (std::string_view contents : XmlElements(resp.body, "Contents")) {
      std::string key = XmlText(contents, "Key");
      std::string size_text = XmlText(contents, "Size");
      uint64_t size = 0;
      auto [end, ec] = std::from_chars(size_text.data(), size_text.data() + size_text.size(), size);
      if (ec != std::errc() || end != size_text.data() + size_text.size() ||
          key.compare(0, full_prefix.size(), full_prefix) != 0)
        return Status::IOError(
            fmt::format("{}: malformed ListObjectsV2 entry", Context("LIST", prefix)), 0);
      out->push_back({key.substr(options_.prefix.size()), size});
    }
    token.clear();
    if (XmlText(resp.body, "IsTruncated") == "true") {
      token = XmlText(resp.body, "NextContinuationToken");
      if (token.empty())
        return Status::IOError(fmt::format("{}: truncated listing without a continuation token",
                                           Context("LIST", prefix)),
                               0);
    }
  } while (!token.empty());
  return Status::OK();
}

// Trims spaces and tabs.
std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

}  // namespace

Result<S3Credentials> LoadS3CredentialsFile(const std::string& path, const std::string& profile) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & (S_IRGRP | S_IROTH)) != 0)
    log::Warn(
        "{}: the S3 credentials file may be read by group or others (mode {:o}); "
        "chmod 600 it",
        path, st.st_mode & 07777);
  ASSIGN_OR_RETURN(std::string text, ReadWholeFile(Env::Default(), path));

  // Errors name the line, never its content: it may hold a secret.
  S3Credentials creds;
  int profile_line = 0;  // of the [profile] header, 0 while not found
  bool in_profile = false;
  bool in_any = false;
  int line_no = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line = Trim(std::string_view(text).substr(pos, end - pos));
    pos = end + 1;
    ++line_no;
    if (line.empty() || line.front() == '#' || line.front() == ';') continue;
    if (line.front() == '[') {
      if (line.back() != ']')
        return Status::InvalidArgument(
            fmt::format("{}:{}: a section header must end with ']'", path, line_no));
      std::string_view name = Trim(line.substr(1, line.size() - 2));
      if (name.substr(0, 8) == "profile ") name = Trim(name.substr(8));
      in_any = true;
      in_profile = name == profile;
      if (in_profile && profile_line == 0) profile_line = line_no;
      continue;
    }
    size_t eq = line.find('=');
    if (eq == std::string_view::npos)
      return Status::InvalidArgument(
          fmt::format("{}:{}: expected 'name = value' or '[profile]'", path, line_no));
    if (!in_any)
      return Status::InvalidArgument(
          fmt::format("{}:{}: setting before the first [profile] header", path, line_no));
    if (!in_profile) continue;
    std::string name(Trim(line.substr(0, eq)));
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    std::string_view value = Trim(line.substr(eq + 1));
    if (name == "aws_access_key_id") creds.access_key = value;
    if (name == "aws_secret_access_key") creds.secret_key = value;
  }
  if (profile_line == 0)
    return Status::InvalidArgument(fmt::format("{}: no [{}] profile", path, profile));
  if (creds.access_key.empty())
    return Status::InvalidArgument(
        fmt::format("{}:{}: profile [{}] has no aws_access_key_id", path, profile_line, profile));
  if (creds.secret_key.empty())
    return Status::InvalidArgument(fmt::format("{}:{}: profile [{}] has no aws_secret_access_key",
                                               path, profile_line, profile));
  return creds;
}

Result<S3Credentials> S3CredentialsFromEnvironment() {
  S3Credentials creds;
  for (auto [var, field] : {std::pair{"AWS_ACCESS_KEY_ID", &creds.access_key},
                            std::pair{"AWS_SECRET_ACCESS_KEY", &creds.secret_key}}) {
    const char* value = std::getenv(var);
    if (value == nullptr || *value == '\0')
      return Status::NotFound(fmt::format("{} is not set in the environment", var));
    *field = value;
  }
  return creds;
}

std::string S3ObjectUrl(const S3Options& options, std::string_view key) {
  return BucketBase(options) + "/" + UriEncode(options.prefix + std::string(key), true);
}

Result<std::unique_ptr<Tier>> OpenS3Tier(const S3Options& options) {
  RETURN_IF_ERROR(ValidateOptions(options));
  RETURN_IF_ERROR(CurlGlobalInit());
  if (!options.verify_tls)
    log::Warn("S3 tier {}: TLS certificate verification is off (verify_tls = false)", options.name);
  return std::unique_ptr<Tier>(new S3Tier(options));
}

}  // namespace strata::tiering
