// Derivation of a new VHDX image's GUIDs and sequence number from the host's random bytes.
#include "vhdx_create_ids.h"

#include "vhdx_bytes.h"

namespace instar::vhdx {

namespace {

// SplitMix64's finaliser: a bijection that spreads every input bit over the output.
uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// 64 bits depending on all 32 random bytes and on `label` (distinct labels, unrelated outputs).
uint64_t derive(const uint8_t* random, uint64_t label) {
    uint64_t h = mix64(label * 0x9e3779b97f4a7c15ull);
    for (int i = 0; i < 4; ++i)
        h = mix64(h ^ load_le64(random + 8 * i));
    return h;
}

void store_le64(uint8_t* p, uint64_t v) {
    for (int i = 0; i < 8; ++i)
        p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// qemu_uuid_generate's version 4 and RFC 4122 variant bits, on the bytes as stored.
void make_v4(uint8_t* g) {
    g[6] = static_cast<uint8_t>((g[6] & 0x0f) | 0x40);
    g[8] = static_cast<uint8_t>((g[8] & 0x3f) | 0x80);
}

} // namespace

void vhdx_create_ids(const uint8_t* random, VhdxCreateIds* out) {
    __builtin_memcpy(out->file_write_guid, random, 16);
    __builtin_memcpy(out->data_write_guid, random + 16, 16);
    store_le64(out->page83_guid, derive(random, 1));
    store_le64(out->page83_guid + 8, derive(random, 2));
    make_v4(out->file_write_guid);
    make_v4(out->data_write_guid);
    make_v4(out->page83_guid);
    out->sequence_number = static_cast<uint32_t>(derive(random, 3));
}

void vhdx_derived_guid(const uint8_t* random, uint64_t label, uint8_t* out) {
    store_le64(out, derive(random, 2 * label));
    store_le64(out + 8, derive(random, 2 * label + 1));
    make_v4(out);
}

} // namespace instar::vhdx
