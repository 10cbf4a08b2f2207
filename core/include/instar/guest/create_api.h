// What format code gets, and what it may do, when it creates a new image (`instar create`).
//
// The host parses the command line, validates every `-o` key against the plugin's table, picks the
// virtual size (from SIZE or the backing file), and opens the files; the format's guest half turns
// that into on-disk metadata. The same sources run in the guest module, in hosted unit tests and in
// the emitter fuzz target, so nothing here needs libc. Documented in docs/create.md.
#pragma once

#include <instar/guest/format_api.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::guest {

// A flag of instar_create_arg (guest_abi.h, beside INSTAR_CREATE_DATA_FILE_DEVICE): the new image's
// secret (key-secret / encrypt.key-secret: a LUKS passphrase) is the last device, a sealed struct
// instar_secret_table with one entry for image 0; the runtime passes it as CreateRequest::secret.
// convert passes its target's secret in its secrets device instead (entry image == image_count).
#define INSTAR_CREATE_SECRET_DEVICE 16u

// How the space behind a file's new length is provided (qemu's PreallocMode).
enum class Prealloc : uint32_t {
    Off = 0,      // sparse: a hole
    Metadata = 1, // format-level: all metadata written, data unallocated (never passed to set_length)
    Falloc = 2,   // reserved with fallocate, reads as zero
    Full = 3,     // zeros written
};

// One `-o` setting the user made (after per-target flags were folded in). The host has checked the
// key against the format's table and normalised the value: sizes and numbers in decimal bytes,
// booleans "on"/"off", strings verbatim. Each key appears at most once (the last setting wins).
struct CreateOption {
    const char* key;
    const char* value;
};

// Bounds shared by the host and format code.
inline constexpr size_t CREATE_MAX_REASON = 512;    // one line of qemu's wording, not a data channel
inline constexpr size_t CREATE_MAX_FILE_NAME = 255; // NAME_MAX: an added file is one directory entry
inline constexpr size_t CREATE_RANDOM_BYTES = 32;   // GUIDs and CIDs (vhdx needs three GUIDs)

// The files of the image being created, and the channel back to the host.
class CreateTarget {
public:
    // The new image file: empty on entry, writable; writes past its end extend it.
    virtual BlockDevice& image() = 0;
    // Sets a created file's length. Growing adds zeros: a hole (Off), reserved space (Falloc) or
    // written zeros (Full); the host does the filling, so it costs no guest memory or time.
    virtual Status set_length(BlockDevice& file, uint64_t length, Prealloc mode) = 0;
    // Creates a further file beside the image (a vmdk extent). `name` is a plain file name, no '/'.
    // The host creates it atomically with the image: on failure neither is left behind.
    virtual Status add_file(const char* name, BlockDevice** out) = 0;
    // Why creation was refused, in qemu-img's words: the host prints "qemu-img: FILE: TEXT". Call
    // it before returning a non-Ok Status.
    virtual void reason(const char* text, size_t len) = 0;
    // The allocation unit the format settled on (cluster, grain or block size), for
    // `--output=json`'s resolved_unit_size.
    virtual void resolved_unit_size(uint64_t bytes) = 0;

protected:
    ~CreateTarget() = default;
};

// What a format's create entry point gets.
struct CreateRequest {
    uint64_t size;                 // virtual size in bytes (SIZE, -o size= or the backing's size)
    const CreateOption* options;   // the user's settings for this format, see CreateOption
    uint32_t option_count;
    const char* file_name;         // the new image's base name (vmdk names extents after it)
    const char* backing_file;      // -b verbatim, or nullptr
    const char* backing_fmt;       // -F (or the detected format), or nullptr
    BlockDevice* backing;          // the backing file opened read-only for its header, or nullptr (-u)
    uint64_t backing_size;         // the backing file's virtual size (0 when not known)
    int64_t unix_time;             // seconds since 1970, for on-disk timestamps
    const uint8_t* random;         // CREATE_RANDOM_BYTES bytes from the host's CSPRNG
    uint32_t qemu_version;         // the output profile, major*10000 + minor*100 + micro
    Allocator* allocator;
    const struct Codecs* codecs;   // compressors and decompressors (read_api.h); nullptr for create
    // The external data file the host made for the `data_file` option (empty, writable), or nullptr.
    BlockDevice* data_file = nullptr;
    // The new image's secret (--object secret named by key-secret / encrypt.key-secret: a LUKS
    // passphrase), or nullptr when the user named none. Never echo it in a reason.
    const uint8_t* secret = nullptr;
    size_t secret_len = 0;
};

using CreateFn = Status (*)(const CreateRequest& req, CreateTarget& target);

// ---- Helpers for reading CreateRequest options (header-only, freestanding) ----

inline bool create_str_equal(const char* a, const char* b) {
    for (; *a != 0 && *a == *b; ++a, ++b) {
    }
    return *a == *b;
}

// The value the user set for `key`, or nullptr.
inline const char* create_option(const CreateRequest& req, const char* key) {
    for (uint32_t i = 0; i < req.option_count; ++i)
        if (create_str_equal(req.options[i].key, key))
            return req.options[i].value;
    return nullptr;
}

// Parses a normalised decimal value; false on anything else (including overflow).
inline bool create_parse_u64(const char* s, uint64_t* out) {
    if (s == nullptr || *s == 0)
        return false;
    uint64_t v = 0;
    for (; *s != 0; ++s) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - static_cast<uint64_t>(*s - '0')) / 10)
            return false;
        v = v * 10 + static_cast<uint64_t>(*s - '0');
    }
    *out = v;
    return true;
}

// `key` as a number, or `fallback` when unset. False when set but not a normalised number.
inline bool create_option_u64(const CreateRequest& req, const char* key, uint64_t fallback, uint64_t* out) {
    const char* v = create_option(req, key);
    if (v == nullptr) {
        *out = fallback;
        return true;
    }
    return create_parse_u64(v, out);
}

// `key` as a boolean ("on"/"off" after normalisation), or `fallback` when unset.
inline bool create_option_bool(const CreateRequest& req, const char* key, bool fallback) {
    const char* v = create_option(req, key);
    return v == nullptr ? fallback : create_str_equal(v, "on");
}

// `key`'s preallocation mode; false for a value that is not one of qemu's four names.
inline bool create_option_prealloc(const CreateRequest& req, Prealloc* out) {
    const char* v = create_option(req, "preallocation");
    if (v == nullptr || create_str_equal(v, "off"))
        *out = Prealloc::Off;
    else if (create_str_equal(v, "metadata"))
        *out = Prealloc::Metadata;
    else if (create_str_equal(v, "falloc"))
        *out = Prealloc::Falloc;
    else if (create_str_equal(v, "full"))
        *out = Prealloc::Full;
    else
        return false;
    return true;
}

// Reports `text` (a string literal or NUL-terminated) as the reason and returns `st`.
inline Status create_fail(CreateTarget& t, Status st, const char* text) {
    size_t n = 0;
    while (text[n] != 0 && n < CREATE_MAX_REASON)
        ++n;
    t.reason(text, n);
    return st;
}

} // namespace instar::guest
