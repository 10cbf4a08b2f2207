// A libFuzzer-compatible driver for builds without libFuzzer (gcc): runs LLVMFuzzerTestOneInput on
// each file given, then on deterministic mutations of them (byte flips, truncations, 0x00/0xFF/
// boundary integers written over fields) until the time budget is spent. Usage:
//   FUZZER [-seconds=N] [-seed=N] SEED_FILE|SEED_DIR...
// (a directory: every file in it, e.g. a corpus libFuzzer grew). With clang, the same targets build
// coverage-guided instead: meson -Dfuzz_engine=libfuzzer (libfuzzer_main.cpp, docs/fuzzing.md).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

std::vector<std::uint8_t> read_file(const char* path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void mutate(std::vector<std::uint8_t>& d, std::mt19937_64& rng) {
    if (d.empty()) {
        d.push_back(static_cast<std::uint8_t>(rng()));
        return;
    }
    static constexpr std::uint64_t INTERESTING[] = {0, 1, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff, 0x7fffffff,
                                                    0x80000000, 0xffffffff, 0x7fffffffffffffff, ~0ull};
    const int n = 1 + static_cast<int>(rng() % 8);
    for (int i = 0; i < n; ++i) {
        const std::size_t at = rng() % d.size();
        switch (rng() % 5) {
        case 0: d[at] ^= static_cast<std::uint8_t>(1u << (rng() % 8)); break;
        case 1: d[at] = static_cast<std::uint8_t>(rng()); break;
        case 2: {
            const std::uint64_t v = INTERESTING[rng() % std::size(INTERESTING)];
            const std::size_t width = std::size_t{1} << (rng() % 4);
            const bool big_endian = rng() % 2;
            for (std::size_t k = 0; k < width && at + k < d.size(); ++k)
                d[at + k] = static_cast<std::uint8_t>(v >> (8 * (big_endian ? width - 1 - k : k)));
            break;
        }
        case 3:
            if (rng() % 8 == 0)
                d.resize(at + 1); // truncation
            break;
        default: d[at] = d[rng() % d.size()]; break;
        }
    }
}

} // namespace

int main(int argc, char** argv) {
    double seconds = 10;
    std::uint64_t seed = 1;
    std::vector<std::vector<std::uint8_t>> corpus;
    for (int i = 1; i < argc; ++i) {
        if (std::strncmp(argv[i], "-seconds=", 9) == 0)
            seconds = std::atof(argv[i] + 9);
        else if (std::strncmp(argv[i], "-seed=", 6) == 0)
            seed = std::strtoull(argv[i] + 6, nullptr, 10);
        else if (std::filesystem::is_directory(argv[i])) {
            std::vector<std::filesystem::path> files; // sorted: the same seed gives the same run
            for (const auto& e : std::filesystem::directory_iterator(argv[i]))
                files.push_back(e.path());
            std::sort(files.begin(), files.end());
            for (const auto& f : files)
                corpus.push_back(read_file(f.c_str()));
        } else
            corpus.push_back(read_file(argv[i]));
    }
    if (corpus.empty())
        corpus.emplace_back();
    for (const auto& c : corpus)
        LLVMFuzzerTestOneInput(c.data(), c.size());
    std::mt19937_64 rng(seed);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    std::uint64_t runs = corpus.size();
    while (std::chrono::steady_clock::now() < deadline) {
        for (int k = 0; k < 64; ++k, ++runs) {
            auto d = corpus[rng() % corpus.size()];
            mutate(d, rng);
            LLVMFuzzerTestOneInput(d.data(), d.size());
        }
    }
    std::printf("fuzz: %llu runs in %.1f s, no crash\n", static_cast<unsigned long long>(runs), seconds);
    return 0;
}
