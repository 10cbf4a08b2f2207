// The libFuzzer engine's main (meson -Dfuzz_engine=libfuzzer, clang): every fuzz target links it and
// libclang_rt.fuzzer_no_main, and is compiled with -fsanitize=fuzzer-no-link (coverage guidance).
//
// Two command lines:
//   FUZZER -seconds=N [-seed=N] SEED_FILE|SEED_DIR...   (the form every target's meson test uses, the
//       same as the standalone driver's): runs libFuzzer for N seconds (-max_total_time=N) over its
//       corpus directory FUZZER.corpus/ beside the executable, into which the seed files are copied
//       first; seed directories (the grown corpora kept in the tree) are read as further corpus
//       directories. libFuzzer runs in a child process: on a finding (crash, sanitizer report, leak,
//       timeout, out-of-memory) the parent prints the kept input (FUZZER.artifacts/) in base64 and
//       exits non-zero.
//   FUZZER ANY-OTHER-LIBFUZZER-ARGUMENTS   (e.g. -merge=1 DIR DIR, -runs=N, CRASH_FILE): passed to
//       libFuzzer unchanged.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);
extern "C" int LLVMFuzzerRunDriver(int* argc, char*** argv, int (*cb)(const std::uint8_t*, std::size_t));

namespace {

namespace fs = std::filesystem;

// An input larger than this is named, not printed (a finding's input is kept in the artifacts dir).
constexpr std::uintmax_t MAX_PRINTED_INPUT = 1u << 20;
// Per-input time limit: far above any target's slowest honest input on a busy 2-core machine.
constexpr int PER_INPUT_TIMEOUT_SECONDS = 60;

std::string base64(const std::vector<unsigned char>& in) {
    static constexpr char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    for (std::size_t i = 0; i < in.size(); i += 3) {
        const unsigned v = (in[i] << 16) | ((i + 1 < in.size() ? in[i + 1] : 0) << 8) |
                           (i + 2 < in.size() ? in[i + 2] : 0);
        out += A[(v >> 18) & 63];
        out += A[(v >> 12) & 63];
        out += i + 1 < in.size() ? A[(v >> 6) & 63] : '=';
        out += i + 2 < in.size() ? A[v & 63] : '=';
        if ((out.size() + 1) % 77 == 0)
            out += '\n';
    }
    return out;
}

int run_libfuzzer(std::vector<std::string> args) {
    std::vector<char*> ptrs;
    for (auto& a : args)
        ptrs.push_back(a.data());
    ptrs.push_back(nullptr);
    int argc = static_cast<int>(args.size());
    char** argv = ptrs.data();
    return LLVMFuzzerRunDriver(&argc, &argv, LLVMFuzzerTestOneInput);
}

} // namespace

int main(int argc, char** argv) {
    if (argc < 2 || std::strncmp(argv[1], "-seconds=", 9) != 0)
        return LLVMFuzzerRunDriver(&argc, &argv, LLVMFuzzerTestOneInput);

    const fs::path exe = fs::weakly_canonical(fs::absolute(argv[0]));
    const fs::path corpus = exe.string() + ".corpus";
    const fs::path artifacts = exe.string() + ".artifacts";
    std::error_code ec;
    fs::create_directories(corpus, ec);
    fs::create_directories(artifacts, ec);
    std::vector<std::string> args = {argv[0], "-max_total_time=" + std::string(argv[1] + 9),
                                     "-artifact_prefix=" + artifacts.string() + "/",
                                     "-timeout=" + std::to_string(PER_INPUT_TIMEOUT_SECONDS),
                                     "-print_final_stats=1", corpus.string()};
    for (int i = 2; i < argc; ++i) {
        if (std::strncmp(argv[i], "-seed=", 6) == 0 || std::strncmp(argv[i], "-max_len=", 9) == 0) {
            args.emplace_back(argv[i]);
        } else if (fs::is_directory(argv[i])) {
            args.emplace_back(argv[i]);
        } else if (fs::is_regular_file(argv[i])) {
            fs::copy_file(argv[i], corpus / fs::path(argv[i]).filename(), fs::copy_options::overwrite_existing, ec);
            if (ec) {
                std::fprintf(stderr, "fuzz: cannot copy seed %s: %s\n", argv[i], ec.message().c_str());
                return 2;
            }
        } else {
            std::fprintf(stderr, "fuzz: no such seed file or directory: %s\n", argv[i]);
            return 2;
        }
    }
    // Findings of earlier runs stay in the artifacts dir until this run starts.
    for (const auto& e : fs::directory_iterator(artifacts, ec))
        fs::remove(e.path(), ec);

    std::fflush(nullptr);
    const pid_t child = fork();
    if (child < 0) {
        std::perror("fuzz: fork");
        return 2;
    }
    if (child == 0)
        _exit(run_libfuzzer(args));
    int status = 0;
    while (waitpid(child, &status, 0) < 0) {
    }
    const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    int findings = 0;
    for (const auto& e : fs::directory_iterator(artifacts, ec)) {
        ++findings;
        const auto size = fs::file_size(e.path(), ec);
        std::printf("fuzz: FINDING kept in %s (%llu bytes)\n", e.path().c_str(), static_cast<unsigned long long>(size));
        if (size <= MAX_PRINTED_INPUT) {
            std::ifstream in(e.path(), std::ios::binary);
            const std::vector<unsigned char> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
            std::printf("fuzz: the input, base64 (decode with base64 -d > input; rerun: %s input):\n%s\n",
                        exe.c_str(), base64(bytes).c_str());
        }
    }
    if (ok && findings == 0)
        return 0;
    std::printf("fuzz: libFuzzer %s %d; %d finding(s)\n", WIFEXITED(status) ? "exited with" : "killed by signal",
                WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), findings);
    return 1;
}
