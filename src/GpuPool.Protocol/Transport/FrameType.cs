namespace GpuPool.Protocol.Transport;

/// <summary>
/// Frame types of the raw fast path. Op types carry the same numbers as the fields of
/// <c>OpRequest.op</c> in session.proto, so both transports name an op the same way.
/// </summary>
public enum FrameType : ushort
{
    /// <summary>
    /// Client → broker, first frame of a connection: fixed {u16 version, u16 lease id length, u16 token length,
    /// u16 reserved}, payload lease id + token (UTF-8). A version the broker does not speak is refused, naming both.
    /// </summary>
    Hello = 1,

    /// <summary>The hello of fast-path version 1 (fixed {u16 lease id length, u16 token length}): refused, naming both versions.</summary>
    HelloVersion1 = 2,
    MemAlloc = 3,
    MemFree = 4,
    MemcpyHtoD = 5,
    MemcpyDtoH = 6,
    MemcpyDtoD = 7,
    Memset = 8,
    ModuleLoad = 9,
    ModuleUnload = 10,
    ModuleGetFunction = 11,
    Launch = 12,
    StreamCreate = 13,
    StreamDestroy = 14,
    StreamSynchronize = 15,
    StreamWaitEvent = 16,
    EventCreate = 17,
    EventDestroy = 18,
    EventRecord = 19,
    EventSynchronize = 20,
    EventQuery = 21,
    EventElapsedTime = 22,
    Synchronize = 23,
    MemGetInfo = 24,

    /// <summary>A module variable's address and size: fixed {u64 module}, payload the name (UTF-8); answered with Reply {address, size}.</summary>
    ModuleGetGlobal = 25,

    /// <summary>
    /// A piece of a module image larger than one frame: fixed {u64 offset, u64 total}, payload the piece. Pieces come in
    /// order (offset 0 starts a new image); answered Done. A <see cref="ModuleLoad"/> marked staged loads the whole.
    /// </summary>
    ModuleStage = 26,

    /// <summary>The lease's measured device time and recent share of the device: no fixed fields; answered with Reply {ns, ppm}.</summary>
    Usage = 27,

    /// <summary>
    /// Client → broker, first frame of an extra data connection of an open session (seq 0): fixed {u64 session,
    /// u16 lease id length, u16 token length, u32 reserved}, payload lease id + token (UTF-8). Answered with a
    /// Reply (seq 0) whose value is the connection's index, or an Error (seq 0) and the close.
    /// </summary>
    Join = 32,

    /// <summary>
    /// Client → broker, on the session's first connection: a copy to the device whose bytes come as
    /// <see cref="StripeChunk"/> frames on the connections it names; fixed {u64 ptr, u64 stream, u64 bytes,
    /// u32 chunk bytes, u32 connections (bit i: connection index i; bit 0 is the first connection)}.
    /// </summary>
    MemcpyHtoDStriped = 33,

    /// <summary>
    /// Client → broker, on the session's first connection: a copy to the host whose Data frames the broker
    /// spreads over the connections it names; fixed {u64 ptr, u64 bytes, u64 stream, u32 chunk bytes, u32 connections}.
    /// </summary>
    MemcpyDtoHStriped = 34,

    /// <summary>Client → broker: one chunk of a striped copy to the device (seq: the copy's); fixed {u64 offset}, payload the bytes.</summary>
    StripeChunk = 35,

    /// <summary>Broker → client: an op succeeded; fixed {u64 value, u64 value2} (pointer, handle, flag, elapsed bits, free/total).</summary>
    Reply = 64,

    /// <summary>Broker → client: a chunk of a device-to-host copy; fixed {u64 offset, u32 last}, payload the bytes.</summary>
    Data = 65,

    /// <summary>Broker → client: an op failed; fixed {u32 code, u32 op length, u64 failed seq}, payload op name + message (UTF-8).</summary>
    Error = 66,

    /// <summary>Broker → client: the answer to Hello; payload a serialized SessionInfo.</summary>
    SessionInfo = 67,

    /// <summary>Broker → client, unasked (seq 0): a notice such as a preemption; fixed {i64 deadline unix ms}, payload kind + '\n' + message (UTF-8).</summary>
    Notice = 68,
}
