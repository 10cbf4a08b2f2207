// The attacks hostile.gmod knows (the first byte of its run argument); shared with the tests.
#pragma once

#include <stdint.h>

enum class Attack : uint8_t {
    EndlessLoop = 1,
    ReadPastEnd,
    WriteReadOnly,
    BufferOutsideRam,
    BufferWrapsAround,
    NoSuchDevice,
    UnknownHypercall,
    OversizedRecord,
    OversizedLogLine,
    LogFlood,
    DivideByZero,
    NullPointer,
    PointerPastRam,
    StackOverflow,
    ForeignPort,
    Halt,
    ExhaustAllocator,
    Inflate,     // rest of the argument: a zlib stream; its output comes back as one record
    InflateBomb, // the same with a 1 KiB output limit
    WriteOutput, // writes 4 KiB to device 1 (writable)
    SseMath,
    HypercallLoop, // endless 1-byte reads: the watchdog must stop a guest that keeps exiting too
    SetLengthNotOutput,  // INSTAR_HC_SET_LENGTH on a read-only input
    AddFileNotAllowed,   // INSTAR_HC_ADD_FILE where the operation allows no added files
    AddFileWithSlash,    // INSTAR_HC_ADD_FILE("../x"): not a plain file name
    RawSyscall,          // rest of the argument: a NUL-terminated path the guest tries to open(O_CREAT)
    ShortMessage,        // process sandbox only: a 7-byte message on the channel
    RunArenaCode,        // writes `ret` into an arena buffer and calls it
    // INSTAR_HC_COMPRESS: rest of the argument = kind byte; 64 jobs over the argument's pattern; the
    // results (status, out_len, bytes) come back as one record per job.
    CompressGood,
    CompressTableOutsideRam, // the job table's address past RAM
    CompressBufferOutsideRam, // a job's destination past RAM
    CompressHugeCount,       // 2^40 jobs
    CompressOverlap,         // two jobs share a destination
    CompressDstOverSrc,      // a destination on top of a source
    CompressTooBig,          // a job of 3 MiB
    CompressBadKind,         // kind 99
    WriteModuleCode,         // stores a byte over one of this module's instructions
    WriteRuntimeCode,        // stores a byte over the runtime's first code page (INSTAR_GPA_RUNTIME)
    // Two INSTAR_WRITE_DEFERRABLE writes of 4 KiB to device 1 (pattern i * 7, then i * 11 at 4096),
    // the first one's bytes overwritten right after its call returns (breaking the promise: only
    // its own output may change), then a settling zero-length write; exit 0 whatever they answered.
    WriteOutputDeferred,
    // Process sandbox only (guest_abi.h, INSTAR_PROC_TURN). SleepForAnswers: the spin budget set to
    // 0, so every answer comes the slow way (as a message, or found after the compare-and-exchange
    // lost), over 64 reads of device 0's first 4 KiB; their XOR of 8-byte words comes back as a
    // record. UnreadAnswers: the guest claims to sleep but keeps writing calls without reading one
    // answer; the host must end the run, never block on a full channel.
    SleepForAnswers,
    UnreadAnswers,
    // INSTAR_READ_AHEAD: 70 reads ahead of 64 bytes each from device 0 (offset 64 * i) into one page,
    // then INSTAR_HC_SETTLE_READS; one record: {answers that came back PENDING, the settle's ret},
    // then the page.
    ReadAhead,
    // INSTAR_READ_AHEAD again: 64 reads ahead of 16 KiB each from device 0 into one 1 MiB buffer,
    // then exit 0 without settling them (the host must finish or drop them before the run ends).
    ReadAheadUnsettled,
    // INSTAR_ALLOCATION_RUNS: runs of device 0 from offset 4096 into a buffer of 8 (AllocationRuns:
    // one record, {ret, out_flags, out_size} then the 8 runs as the host left them), and with the
    // buffer outside guest RAM (AllocationRunsOutsideRam: the host must end the guest).
    AllocationRuns,
    AllocationRunsOutsideRam,
    // Not an attack: the runtime's small-read block (devices.cpp). Reads through device 0 (read-only)
    // 8 @ 0, 100 @ 4090 (across a block boundary), 50 @ 4101, the last 3 bytes, 112 @ 0, then
    // writes 16 bytes (i * 13) at 0 through device 1 (writable: the same file in the test) and reads
    // 8 @ 0 through device 0 again; one record with the 281 bytes read, in that order.
    SmallReads,
    // INSTAR_HC_WRITE_SEGMENTS to device 1 (writable, at least 8 KiB); the argument's next byte picks
    // the table (TableCase). Good: 512 B of i * 3 at 4096, 256 B of i * 5 at 0, 128 B of i * 9 at
    // 4096 + 256 (over the first: later segments win); then exit 0 whatever it answered.
    WriteSegments,
    // INSTAR_HC_DISCARD_RANGES on device 1 (writable, at least 8 KiB); the next byte picks the table
    // (TableCase: Good = [0, 512) and [4096, 5120); PastEnd = the second range moved past the
    // end; BufferOutsideRam = no buffers here, so Good; TooMany = 257 ranges; TableOutsideRam;
    // ReadOnly = device 0), then exit 0 whatever it answered.
    DiscardRanges,
    // INSTAR_HC_NEXT_IMAGE (round 26): NextImageNotAllowed where the operation opens no backing
    // files; NextImageBadImage for image 7; NextImageThenWrite asks for image 0's backing file, then
    // writes 4 KiB to the device the host answered (always read-only) and exits 0.
    NextImageNotAllowed,
    NextImageBadImage,
    NextImageThenWrite,
    // Not an attack: RAM grown on demand (INSTAR_HC_GROW_MEMORY, round 42). Allocates 1 MiB blocks
    // until the allocator fails, stores a byte in every 4 KiB page of each (RAM past the start is
    // there only once the host grew it), then one record: the block count; exits NoMemory.
    TouchArena,
    // Not an attack: the runtime's own block (devices.cpp). Devices 1 and 2 are one writable file.
    // Reads 8 @ 0 and 112 @ 0 through device 1, writes 16 bytes (i * 13) at 4 through it, reads
    // 112 @ 0, writes 8 bytes (i * 17) at 100 through device 2, reads 112 @ 0 through device 1; one
    // record with the 8 + 3 * 112 bytes read, in that order.
    OwnReads,
};

// The table a WriteSegments or DiscardRanges attack sends.
enum class TableCase : uint8_t {
    Good = 0,
    PastEnd,          // the good table with its second entry moved past device 1's end
    BufferOutsideRam, // the good table with its last segment's buffer at 1 TiB (segments only)
    TooMany,          // one entry more than the call takes (65 segments, 257 ranges)
    TableOutsideRam,  // the table's address at 1 TiB
    ReadOnly,         // the good table, to device 0 (read-only)
};
