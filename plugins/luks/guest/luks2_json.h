// A bounded JSON reader for the LUKS2 metadata area (cryptsetup: lib/luks2/luks2_json_metadata.c
// reads it with json-c). Freestanding: the text is tokenized in one pass, without recursion, into a
// flat token array the caller provides (from the guest arena); values are then found by walking
// that array. Strings are kept as their raw bytes between the quotes (escapes are checked, not
// decoded): every name LUKS2 uses is plain ASCII, so an escaped name simply matches nothing.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace instar::luks {

// Nesting the tokenizer accepts. LUKS2 metadata nests four deep (root, "keyslots", "0", "kdf");
// tokens (systemd's, clevis') add a few more. Deeper text is refused, so the open-container stack
// is a fixed array.
inline constexpr uint32_t LUKS2_JSON_MAX_DEPTH = 16;
// Values (objects, arrays, strings, numbers, literals; an object's keys count too) in one metadata
// area. cryptsetup's own areas hold about 120 with one key slot and about 20 per further slot; 32
// slots, tokens and their payloads stay far below this. The token array is 16 bytes a value (128 KiB).
inline constexpr uint32_t LUKS2_JSON_MAX_TOKENS = 8192;

enum class JsonType : uint8_t { Object, Array, String, Number, True, False, Null };

struct JsonToken {
    uint32_t start = 0; // byte offset of the value (a string: after its opening quote)
    uint32_t len = 0;   // bytes (a string: without its quotes; a container: its whole text)
    uint32_t next = 0;  // index of the token after this value's subtree (its next sibling)
    uint16_t children = 0; // an object's members (key + value = one) or an array's elements
    JsonType type = JsonType::Null;
    uint8_t pad = 0;
};
static_assert(sizeof(JsonToken) == 16, "JSON token size used by LUKS2_JSON_MAX_TOKENS' comment");

// Why the text was refused: a short English phrase and the byte offset it happened at.
struct JsonError {
    const char* what = nullptr;
    uint32_t offset = 0;
};

class Json {
public:
    // Tokenizes text[len] (one value, surrounded only by whitespace) into tokens[cap]. false: the
    // text is not JSON, or passes a bound; `err` says which and where.
    bool parse(const char* text, size_t len, JsonToken* tokens, uint32_t cap, JsonError* err);

    static constexpr uint32_t NONE = 0xffffffffu;
    uint32_t root() const { return count_ > 0 ? 0 : NONE; }
    // Token `i`; a Null token for NONE or any index past the last, so a missing member reads as
    // null wherever it is looked at.
    const JsonToken& at(uint32_t i) const {
        static constexpr JsonToken MISSING{};
        return i < count_ ? tok_[i] : MISSING;
    }
    // The value of member `key` of object `obj`, NONE when `obj` is not an object or lacks it.
    uint32_t member(uint32_t obj, const char* key) const;
    // Iterating an object's members: first_member gives the first key token (NONE when empty or not
    // an object), next_member the key after `key`'s value (NONE at the end); value_of a key's value.
    uint32_t first_member(uint32_t obj) const;
    uint32_t next_member(uint32_t obj, uint32_t key) const;
    uint32_t value_of(uint32_t key) const { return key < count_ ? key + 1 : NONE; }
    // Array elements the same way.
    uint32_t first_element(uint32_t arr) const;
    uint32_t next_element(uint32_t arr, uint32_t el) const;

    // A string token equal to `s`.
    bool str_is(uint32_t i, const char* s) const;
    // A string token's bytes (raw, see above); at(i).len of them.
    const char* str(uint32_t i) const { return text_ + at(i).start; }
    // A non-negative integer, as a JSON number or (cryptsetup's u64 spelling) a decimal string,
    // at most `max`. false otherwise (fractions, exponents, signs, overflow, other types).
    bool as_u64(uint32_t i, uint64_t max, uint64_t* out) const;
    // A string token holding a base64 value (RFC 4648, padded, as json-c / cryptsetup write it)
    // decoded into out[cap]. false: not a string, not base64, or longer than cap.
    bool as_base64(uint32_t i, uint8_t* out, size_t cap, size_t* out_len) const;

private:
    const char* text_ = nullptr;
    JsonToken* tok_ = nullptr;
    uint32_t count_ = 0;
};

} // namespace instar::luks
