using GpuPool.Protocol.Transport;
using GpuPool.Protocol.V1;

namespace GpuPool.Protocol.Ops;

/// <summary>
/// Creates a stream; answered with its handle. Stream 0 is the context's default stream, CUDA's legacy one: a stream
/// created without <see cref="StreamFlags.NonBlocking"/> is ordered with it as a blocking stream is in CUDA.
/// </summary>
public readonly record struct StreamCreateOp(StreamFlags Flags) : IOp<StreamCreateOp>
{
    public static FrameType Type => FrameType.StreamCreate;

    public static StreamCreateOp Read(ref FixedFields fields)
    {
        var flags = fields.U32();
        _ = fields.U32();
        return new((StreamFlags)flags);
    }

    public static StreamCreateOp From(StreamCreate message) => new((StreamFlags)message.Flags);

    public void Write(ref FixedBuilder fields) => fields = fields.U32((uint)Flags).U32(0);

    public void ToProto(OpRequest request, ReadOnlySpan<byte> payload) => request.StreamCreate = new StreamCreate { Flags = (uint)Flags };
}

/// <summary>How a stream is ordered with the default stream: CUDA's stream flags.</summary>
[Flags]
public enum StreamFlags : uint
{
    /// <summary>A blocking stream: its work waits for the default stream's earlier work, and the default stream's for its.</summary>
    Default = 0,

    /// <summary>The stream runs beside the default stream, unordered with it (CU_STREAM_NON_BLOCKING).</summary>
    NonBlocking = 1,
}

/// <summary>Destroys a stream; work already queued on it still runs. Answered Done.</summary>
public readonly record struct StreamDestroyOp(ulong Stream) : IOp<StreamDestroyOp>
{
    public static FrameType Type => FrameType.StreamDestroy;

    public static StreamDestroyOp Read(ref FixedFields fields) => new(fields.U64());

    public static StreamDestroyOp From(StreamDestroy message) => new(message.Stream);

    public void Write(ref FixedBuilder fields) => fields = fields.U64(Stream);

    public void ToProto(OpRequest request, ReadOnlySpan<byte> payload) => request.StreamDestroy = new StreamDestroy { Stream = Stream };
}

/// <summary>Waits for the stream's work; answered Done or with the sticky error.</summary>
public readonly record struct StreamSynchronizeOp(ulong Stream) : IOp<StreamSynchronizeOp>
{
    public static FrameType Type => FrameType.StreamSynchronize;

    public static StreamSynchronizeOp Read(ref FixedFields fields) => new(fields.U64());

    public static StreamSynchronizeOp From(StreamSynchronize message) => new(message.Stream);

    public void Write(ref FixedBuilder fields) => fields = fields.U64(Stream);

    public void ToProto(OpRequest request, ReadOnlySpan<byte> payload) => request.StreamSynchronize = new StreamSynchronize { Stream = Stream };
}

/// <summary>Makes the stream's later work wait for the event's latest record. Fire-and-forget.</summary>
public readonly record struct StreamWaitEventOp(ulong Stream, ulong Event) : IOp<StreamWaitEventOp>
{
    public const string Name = "stream_wait_event";

    public static FrameType Type => FrameType.StreamWaitEvent;

    public static StreamWaitEventOp Read(ref FixedFields fields) => new(fields.U64(), fields.U64());

    public static StreamWaitEventOp From(StreamWaitEvent message) => new(message.Stream, message.Event);

    public void Write(ref FixedBuilder fields) => fields = fields.U64(Stream).U64(Event);

    public void ToProto(OpRequest request, ReadOnlySpan<byte> payload) => request.StreamWaitEvent = new StreamWaitEvent { Stream = Stream, Event = Event };
}

/// <summary>Creates an event; answered with its handle.</summary>
public readonly record struct EventCreateOp : IOp<EventCreateOp>
{
    public static FrameType Type => FrameType.EventCreate;

    public static EventCreateOp Read(ref FixedFields fields) => default;

    public void Write(ref FixedBuilder fields)
    {
    }

    public void ToProto(OpRequest request, ReadOnlySpan<byte> payload) => request.EventCreate = new EventCreate();
}

/// <summary>Destroys an event; answered Done.</summary>
public readonly record struct EventDestroyOp(ulong Event) : IOp<EventDestroyOp>
{
    public static FrameType Type => FrameType.EventDestroy;

    public static EventDestroyOp Read(ref FixedFields fields) => new(fields.U64());

    public static EventDestroyOp From(EventDestroy message) => new(message.Event);

    public void Write(ref FixedBuilder fields) => fields = fields.U64(Event);

    public void ToProto(OpRequest request, ReadOnlySpan<byte> payload) => request.EventDestroy = new EventDestroy { Event = Event };
}

/// <summary>Records the event when the stream reaches it. Fire-and-forget.</summary>
public readonly record struct EventRecordOp(ulong Stream, ulong Event) : IOp<EventRecordOp>
{
    public const string Name = "event_record";

    public static FrameType Type => FrameType.EventRecord;

    public static EventRecordOp Read(ref FixedFields fields) => new(fields.U64(), fields.U64());

    public static EventRecordOp From(EventRecord message) => new(message.Stream, message.Event);

    public void Write(ref FixedBuilder fields) => fields = fields.U64(Stream).U64(Event);

    public void ToProto(OpRequest request, ReadOnlySpan<byte> payload) => request.EventRecord = new EventRecord { Stream = Stream, Event = Event };
}

/// <summary>Waits for the event's latest record; answered Done or with the sticky error.</summary>
public readonly record struct EventSynchronizeOp(ulong Event) : IOp<EventSynchronizeOp>
{
    public static FrameType Type => FrameType.EventSynchronize;

    public static EventSynchronizeOp Read(ref FixedFields fields) => new(fields.U64());

    public static EventSynchronizeOp From(EventSynchronize message) => new(message.Event);

    public void Write(ref FixedBuilder fields) => fields = fields.U64(Event);

    public void ToProto(OpRequest request, ReadOnlySpan<byte> payload) => request.EventSynchronize = new EventSynchronize { Event = Event };
}

/// <summary>Whether the event's latest record has completed; answered 1 or 0.</summary>
public readonly record struct EventQueryOp(ulong Event) : IOp<EventQueryOp>
{
    public static FrameType Type => FrameType.EventQuery;

    public static EventQueryOp Read(ref FixedFields fields) => new(fields.U64());

    public static EventQueryOp From(EventQuery message) => new(message.Event);

    public void Write(ref FixedBuilder fields) => fields = fields.U64(Event);

    public void ToProto(OpRequest request, ReadOnlySpan<byte> payload) => request.EventQuery = new EventQuery { Event = Event };
}

/// <summary>Milliseconds between two completed records; answered with the float's bits.</summary>
public readonly record struct EventElapsedTimeOp(ulong Start, ulong End) : IOp<EventElapsedTimeOp>
{
    public static FrameType Type => FrameType.EventElapsedTime;

    public static EventElapsedTimeOp Read(ref FixedFields fields) => new(fields.U64(), fields.U64());

    public static EventElapsedTimeOp From(EventElapsedTime message) => new(message.Start, message.End);

    public void Write(ref FixedBuilder fields) => fields = fields.U64(Start).U64(End);

    public void ToProto(OpRequest request, ReadOnlySpan<byte> payload) => request.EventElapsedTime = new EventElapsedTime { Start = Start, End = End };
}
