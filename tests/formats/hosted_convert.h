// Test support for convert: the guest convert engine (guest/convert) run hosted over a format's
// readers and a format's writer into a real file, so differential tests can compare the bytes with
// `qemu-img convert`. Never used by the instar binary itself.
#pragma once

#include "convert_engine.h"

#include "instar/guest/read_api.h"
#include "instar/guest/write_api.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace instar::hosted {

struct HostedConvert {
    // Each source is a backing chain, top first (chain[i + 1] backs chain[i]); all opened with `open`.
    std::vector<std::vector<std::string>> sources;
    guest::OpenFn open = nullptr;
    std::vector<std::uint64_t> source_alignment; // per source, 0 when absent (see convert::Source)
    std::string out_path;
    std::vector<std::pair<std::string, std::string>> options; // normalised -o settings
    std::string backing_file; // -B (empty: none); its virtual size comes from opening it with `open`
    std::string backing_fmt;  // -F
    convert::Params params;
    std::uint32_t qemu_version = 100000;
    std::size_t memory_budget = 64u << 20; // the guest arena stand-in
};

struct HostedConvertResult {
    guest::Status status = guest::Status::Ok;
    std::string reason;
    std::size_t peak_memory = 0;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> progress; // (done, total) as reported
};

// Opens every source, creates out_path through create_writer (size: the sources' sectors, as
// qemu-img sizes the target), runs convert::run_convert and closes everything.
HostedConvertResult run_hosted_convert(const HostedConvert& job, guest::CreateWriterFn create_writer);

// qemu-img convert -p's output for the progress calls a convert made (util/qemu-progress.c).
std::string progress_text(const std::vector<std::pair<std::uint64_t, std::uint64_t>>& calls, bool ok);

// main() of a `<fmt>_hosted_convert` tool (-p prints qemu's progress display on stderr):
//   TOOL [-p] [-S BYTES] [-c] [-o K=V[,K=V...]]... [-B BACKING [-F FMT]] [--qemu-version N]
//        [--alignment BYTES] SRC[:BACKING...]... OUT
// prints {"status": N, "reason": "...", "peak-memory": N, "progress-calls": N} and writes OUT.
int hosted_convert_main(int argc, char** argv, guest::OpenFn open, guest::CreateWriterFn create_writer);

} // namespace instar::hosted
