// "Info first": one sandbox start instead of two for a command whose host would otherwise run
// INSTAR_OP_INFO on the image and then start the sandbox again for the command itself. The guest
// inspects device 0 with module 0 exactly as INSTAR_OP_INFO would (probing it, unless the user named
// the format), sends the same INSTAR_REC_INFO records, and reports whether the image stands alone:
// it names no other file (backing, extent, data file), is not encrypted and has a size. Only then
// may the command run in this start; otherwise the host takes its ordinary path with the info it was
// sent (docs/architecture.md, "One start where the image stands alone"). Used by INSTAR_OP_EDIT's
// INSTAR_EDIT_INFO_FIRST and by INSTAR_OP_INFO_FIRST (the read-only commands).
#pragma once

#include "runtime.h"

namespace instar::guest {

struct InfoFirstResult {
    bool lone = false;         // the image stands alone (the command may run here)
    bool backing_only = false; // ... but for a backing file: it names no other file, is not encrypted
    bool dirty = false;        // the dirty bit (qcow2): a read-write command repairs it first (host)
    bool corrupt = false;      // a "corrupt": true in the format's data (qcow2's corrupt bit): qemu's
                               // read-write open refuses it, and the host words that (dirty_repair.h)
    uint64_t size = 0;         // its virtual size, as info reported it
    uint64_t cluster_size = 0; // its cluster size, as info reported it (0: none)
    uint32_t module = 0;       // the module that inspected it (a plan must read it with the same)
};

// Inspects `image` (its first `length` bytes, read-only) with `ops`; probes first unless `force`;
// `no_key`: InfoRequest's INFO_REQUEST_NO_KEY. Ok: the inspection succeeded and its records were
// sent (`out` says whether the image stands alone). Any other status: the inspection's own (the
// records sent so far say why).
Status inspect_first(const ModuleOps& ops, BlockDevice& image, uint64_t length, bool force, bool no_key,
                     uint32_t qemu_version, InfoFirstResult* out);

// An inspection's INSTAR_REC_INFO records closed (INSTAR_REC_INFO_END), where a run has several.
Status end_inspection();

// After image `image`'s own inspection `top` (its records closed by end_inspection()), when the host
// allows chains (INSTAR_INFO_FIRST_CHAINS, INSTAR_EDIT_INFO_CHAINS): asks the host for each backing
// file (INSTAR_HC_NEXT_IMAGE) and inspects it the same way, until a level names no other file
// (*ends: the command may run here) or the host does not open one (*ends false, Ok). Another status:
// an inspection failed (its records say why).
Status inspect_backing_chain(uint32_t image, uint32_t qemu_version, const InfoFirstResult& top, bool* ends);

// The virtual size of image `image` as the inspection that started the running operation reported
// it; false outside an INSTAR_OP_INFO_FIRST run.
bool size_from_info(uint32_t image, uint64_t* size);

// The virtual size of image `image`'s backing file as inspect_backing_chain inspected it; false when
// it inspected none.
bool backing_size_from_info(uint32_t image, uint64_t* size);

// INSTAR_OP_INFO_FIRST (docs/guest-abi.md).
Status info_first_op(const uint8_t* arg, uint32_t arg_len);

// A plan entry the host wrote before it had image `image`'s info (map's and compare's
// *_CLUSTER_FROM_INFO): its cluster size from that image's inspection, as the host's table would
// hold it. Invalid outside an INSTAR_OP_INFO_FIRST run, or for an entry on another device or read
// by another module than the one that inspected it.
Status cluster_size_from_info(uint32_t image, instar_convert_image& entry);

// The backing files of the first `tops` entries of a plan's image table, as the INSTAR_OP_INFO_FIRST
// run that started this operation inspected them (INSTAR_INFO_FIRST_CHAINS; the plan's
// *_CHAIN_FROM_INFO flag): appended after the table, each top's `backing` pointing to its first and
// each level's to the next, every level taking its top's per-entry word (map's style, compare's flags)
// and facts flags, and the host's allocated bytes. The three arrays (`facts`: count packed
// instar_image_facts, as plans hold them) are replaced by larger ones from the arena (the old ones
// stay valid). Invalid outside such a run, when a top has a backing already or names another
// module than its inspection.
Status append_info_first_chains(uint32_t tops, instar_convert_image** images, const uint32_t** words,
                                const uint8_t** facts, uint32_t* count);

// A plan the host wrote before the inspections that started the operation, naming `tops` images
// alone (map's and compare's *_CLUSTER_FROM_INFO and *_CHAIN_FROM_INFO flags): with
// `cluster_from_info` their cluster sizes from the inspections (cluster_size_from_info), with
// `chain_from_info` (only with the other) their backing files appended (append_info_first_chains).
Status complete_plan_from_info(uint32_t tops, bool cluster_from_info, bool chain_from_info,
                               instar_convert_image** images, const uint32_t** words, const uint8_t** facts,
                               uint32_t* count);

} // namespace instar::guest
