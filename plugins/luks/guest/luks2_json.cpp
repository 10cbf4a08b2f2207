// The bounded LUKS2 JSON tokenizer (luks2_json.h): one pass, an explicit stack of at most
// LUKS2_JSON_MAX_DEPTH open containers, at most the caller's token count. RFC 8259 grammar.
#include "luks2_json.h"

namespace instar::luks {

namespace {

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

enum class Expect : uint8_t { Value, Key, After };

} // namespace

bool Json::parse(const char* text, size_t len, JsonToken* tokens, uint32_t cap, JsonError* err) {
    text_ = text;
    tok_ = tokens;
    count_ = 0;
    const auto fail = [&](const char* what, size_t at) {
        err->what = what;
        err->offset = static_cast<uint32_t>(at);
        count_ = 0;
        return false;
    };
    if (len >= 0xffffffffu)
        return fail("text too long", 0);
    uint32_t stack[LUKS2_JSON_MAX_DEPTH];
    uint32_t depth = 0;
    Expect expect = Expect::Value;
    bool just_opened = false; // right after '{' or '[': the closing bracket may follow
    bool done = false;        // the top-level value is complete
    size_t p = 0;
    const auto new_token = [&](JsonType type, size_t start) -> JsonToken* {
        if (count_ >= cap)
            return nullptr;
        JsonToken& t = tok_[count_];
        t = JsonToken{};
        t.type = type;
        t.start = static_cast<uint32_t>(start);
        t.next = count_ + 1;
        ++count_;
        return &t;
    };
    while (true) {
        while (p < len && is_ws(text[p]))
            ++p;
        if (done) {
            if (p != len)
                return fail("text after the top-level value", p);
            return true;
        }
        if (p >= len)
            return fail("unexpected end of text", p);
        const char c = text[p];
        const bool in_object = depth > 0 && tok_[stack[depth - 1]].type == JsonType::Object;
        if (expect == Expect::After || (just_opened && (c == '}' || c == ']'))) {
            just_opened = false;
            if (depth == 0)
                return fail("unexpected character", p);
            if (c == ',') {
                ++p;
                expect = in_object ? Expect::Key : Expect::Value;
                continue;
            }
            if (c != (in_object ? '}' : ']'))
                return fail("expected ',' or a closing bracket", p);
            ++p;
            JsonToken& t = tok_[stack[--depth]];
            t.len = static_cast<uint32_t>(p - t.start);
            t.next = count_;
            expect = Expect::After;
            done = depth == 0;
            continue;
        }
        just_opened = false;
        if (expect == Expect::Key && c != '"')
            return fail("expected a member name", p);
        // A value (or a key, which is a string).
        if (depth > 0 && (expect == Expect::Key || !in_object)) {
            JsonToken& parent = tok_[stack[depth - 1]];
            if (parent.children == 0xffff)
                return fail("too many members", p);
            ++parent.children;
        }
        if (c == '{' || c == '[') {
            if (depth == LUKS2_JSON_MAX_DEPTH)
                return fail("nesting too deep", p);
            if (new_token(c == '{' ? JsonType::Object : JsonType::Array, p) == nullptr)
                return fail("too many values", p);
            stack[depth++] = count_ - 1;
            ++p;
            expect = c == '{' ? Expect::Key : Expect::Value;
            just_opened = true;
            continue;
        }
        if (c == '"') {
            const size_t start = ++p;
            while (true) {
                if (p >= len)
                    return fail("unterminated string", start - 1);
                const char s = text[p];
                if (s == '"')
                    break;
                if (static_cast<unsigned char>(s) < 0x20)
                    return fail("control character in a string", p);
                if (s == '\\') {
                    if (p + 1 >= len)
                        return fail("unterminated string", start - 1);
                    const char e = text[p + 1];
                    if (e == 'u') {
                        if (p + 6 > len)
                            return fail("bad \\u escape", p);
                        for (size_t k = 2; k < 6; ++k)
                            if (!is_hex(text[p + k]))
                                return fail("bad \\u escape", p);
                        p += 6;
                        continue;
                    }
                    if (e != '"' && e != '\\' && e != '/' && e != 'b' && e != 'f' && e != 'n' && e != 'r' && e != 't')
                        return fail("bad escape", p);
                    p += 2;
                    continue;
                }
                ++p;
            }
            JsonToken* t = new_token(JsonType::String, start);
            if (t == nullptr)
                return fail("too many values", start - 1);
            t->len = static_cast<uint32_t>(p - start);
            ++p;
            if (expect == Expect::Key) {
                while (p < len && is_ws(text[p]))
                    ++p;
                if (p >= len || text[p] != ':')
                    return fail("expected ':'", p);
                ++p;
                expect = Expect::Value;
                continue;
            }
        } else if (c == '-' || is_digit(c)) {
            const size_t start = p;
            if (text[p] == '-')
                ++p;
            if (p >= len || !is_digit(text[p]))
                return fail("bad number", start);
            if (text[p] == '0')
                ++p;
            else
                while (p < len && is_digit(text[p]))
                    ++p;
            if (p < len && text[p] == '.') {
                ++p;
                if (p >= len || !is_digit(text[p]))
                    return fail("bad number", start);
                while (p < len && is_digit(text[p]))
                    ++p;
            }
            if (p < len && (text[p] == 'e' || text[p] == 'E')) {
                ++p;
                if (p < len && (text[p] == '+' || text[p] == '-'))
                    ++p;
                if (p >= len || !is_digit(text[p]))
                    return fail("bad number", start);
                while (p < len && is_digit(text[p]))
                    ++p;
            }
            JsonToken* t = new_token(JsonType::Number, start);
            if (t == nullptr)
                return fail("too many values", start);
            t->len = static_cast<uint32_t>(p - start);
        } else {
            static constexpr struct {
                const char* word;
                size_t len;
                JsonType type;
            } WORDS[] = {{"true", 4, JsonType::True}, {"false", 5, JsonType::False}, {"null", 4, JsonType::Null}};
            bool matched = false;
            for (const auto& w : WORDS) {
                if (len - p >= w.len && __builtin_memcmp(text + p, w.word, w.len) == 0) {
                    JsonToken* t = new_token(w.type, p);
                    if (t == nullptr)
                        return fail("too many values", p);
                    t->len = static_cast<uint32_t>(w.len);
                    p += w.len;
                    matched = true;
                    break;
                }
            }
            if (!matched)
                return fail("unexpected character", p);
        }
        expect = Expect::After;
        done = depth == 0;
    }
}

uint32_t Json::first_member(uint32_t obj) const {
    if (obj >= count_ || tok_[obj].type != JsonType::Object || tok_[obj].children == 0)
        return NONE;
    return obj + 1;
}

uint32_t Json::next_member(uint32_t obj, uint32_t key) const {
    if (obj >= count_ || key + 1 >= count_)
        return NONE;
    const uint32_t n = tok_[key + 1].next;
    return n < tok_[obj].next ? n : NONE;
}

uint32_t Json::first_element(uint32_t arr) const {
    if (arr >= count_ || tok_[arr].type != JsonType::Array || tok_[arr].children == 0)
        return NONE;
    return arr + 1;
}

uint32_t Json::next_element(uint32_t arr, uint32_t el) const {
    if (arr >= count_ || el >= count_)
        return NONE;
    const uint32_t n = tok_[el].next;
    return n < tok_[arr].next ? n : NONE;
}

uint32_t Json::member(uint32_t obj, const char* key) const {
    for (uint32_t k = first_member(obj); k != NONE; k = next_member(obj, k))
        if (str_is(k, key))
            return value_of(k);
    return NONE;
}

bool Json::str_is(uint32_t i, const char* s) const {
    if (i >= count_ || tok_[i].type != JsonType::String)
        return false;
    const JsonToken& t = tok_[i];
    size_t k = 0;
    for (; k < t.len; ++k)
        if (s[k] == 0 || s[k] != text_[t.start + k])
            return false;
    return s[k] == 0;
}

bool Json::as_u64(uint32_t i, uint64_t max, uint64_t* out) const {
    if (i >= count_ || (tok_[i].type != JsonType::Number && tok_[i].type != JsonType::String))
        return false;
    const JsonToken& t = tok_[i];
    if (t.len == 0)
        return false;
    uint64_t v = 0;
    for (uint32_t k = 0; k < t.len; ++k) {
        const char c = text_[t.start + k];
        if (!is_digit(c))
            return false;
        const uint64_t d = static_cast<uint64_t>(c - '0');
        if (d > max || v > (max - d) / 10) // v * 10 + d > max, without wrapping
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

bool Json::as_base64(uint32_t i, uint8_t* out, size_t cap, size_t* out_len) const {
    if (i >= count_ || tok_[i].type != JsonType::String)
        return false;
    const JsonToken& t = tok_[i];
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t n = 0;
    unsigned pad = 0;
    unsigned chars = 0;
    for (uint32_t k = 0; k < t.len; ++k) {
        char c = text_[t.start + k];
        if (c == '\\') { // json-c may write '/' as "\/"; no other escape is base64
            if (k + 1 >= t.len || text_[t.start + k + 1] != '/')
                return false;
            c = '/';
            ++k;
        }
        ++chars;
        if (c == '=') {
            ++pad;
            continue;
        }
        if (pad != 0)
            return false; // data after padding
        uint32_t v;
        if (c >= 'A' && c <= 'Z') v = static_cast<uint32_t>(c - 'A');
        else if (c >= 'a' && c <= 'z') v = static_cast<uint32_t>(c - 'a') + 26;
        else if (is_digit(c)) v = static_cast<uint32_t>(c - '0') + 52;
        else if (c == '+') v = 62;
        else if (c == '/') v = 63;
        else return false;
        acc = (acc << 6) | v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n >= cap)
                return false;
            out[n++] = static_cast<uint8_t>(acc >> bits);
        }
    }
    if (chars % 4 != 0 || pad > 2 || (acc & ((1u << bits) - 1)) != 0)
        return false;
    *out_len = n;
    return true;
}

} // namespace instar::luks
