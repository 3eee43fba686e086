using GpuPool.Broker.Sessions;
using GpuPool.Protocol.Ops;
using GpuPool.Protocol.Transport;

namespace GpuPool.Broker.Transport.FastPath;

/// <summary>
/// Maps an op frame to its <see cref="SessionExecutor"/> method: the op's value is read from the frame's fixed fields
/// and its payload handed over as a slice of the connection's buffer, valid for the call. Copies to the device, striped
/// copies and hellos are the connection's own business (<see cref="FrameDecoder"/>).
/// </summary>
internal static class FrameOps
{
    /// <summary>Whether a frame of <paramref name="type"/> is an op this map runs.</summary>
    public static bool Runs(FrameType type) => type switch
    {
        FrameType.MemAlloc or FrameType.MemFree or FrameType.MemcpyDtoH or FrameType.MemcpyDtoD or FrameType.Memset or FrameType.MemGetInfo or FrameType.Usage
            or FrameType.ModuleLoad or FrameType.ModuleUnload or FrameType.ModuleGetFunction or FrameType.ModuleGetGlobal or FrameType.ModuleStage or FrameType.Launch
            or FrameType.StreamCreate or FrameType.StreamDestroy or FrameType.StreamSynchronize or FrameType.StreamWaitEvent
            or FrameType.EventCreate or FrameType.EventDestroy or FrameType.EventRecord or FrameType.EventSynchronize
            or FrameType.EventQuery or FrameType.EventElapsedTime or FrameType.Synchronize => true,
        _ => false,
    };

    /// <summary>Numbers and runs the op; a task that has not completed is an op that waits (nothing after it may run yet).</summary>
    public static ValueTask Run(SessionExecutor session, in Frame frame, CancellationToken cancellationToken)
        => session.Run(frame.Seq, (frame, cancellationToken), Dispatch);

    private static ValueTask Dispatch(SessionExecutor s, (Frame Frame, CancellationToken Cancel) state)
    {
        var frame = state.Frame;
        var seq = frame.Seq;
        return frame.Type switch
        {
            FrameType.MemAlloc => s.MemAlloc(seq, OpFrames.Read<MemAllocOp>(frame)),
            FrameType.MemFree => s.MemFree(seq, OpFrames.Read<MemFreeOp>(frame)),
            FrameType.MemcpyDtoH => s.MemcpyDtoH(seq, OpFrames.Read<MemcpyDtoHOp>(frame)),
            FrameType.MemcpyDtoD => s.MemcpyDtoD(seq, OpFrames.Read<MemcpyDtoDOp>(frame)),
            FrameType.Memset => s.Memset(seq, OpFrames.Read<MemsetOp>(frame)),
            FrameType.MemGetInfo => s.MemGetInfo(seq),
            FrameType.Usage => s.Usage(seq),
            FrameType.ModuleLoad => s.ModuleLoad(seq, OpFrames.Read<ModuleLoadOp>(frame), frame.Payload),
            FrameType.ModuleUnload => s.ModuleUnload(seq, OpFrames.Read<ModuleUnloadOp>(frame)),
            FrameType.ModuleGetFunction => s.ModuleGetFunction(seq, OpFrames.Read<ModuleGetFunctionOp>(frame), frame.Payload),
            FrameType.ModuleGetGlobal => s.ModuleGetGlobal(seq, OpFrames.Read<ModuleGetGlobalOp>(frame), frame.Payload),
            FrameType.ModuleStage => s.ModuleStage(seq, OpFrames.Read<ModuleStageOp>(frame), frame.Payload),
            FrameType.Launch => s.Launch(seq, OpFrames.Read<LaunchOp>(frame), frame.Payload),
            FrameType.StreamCreate => s.StreamCreate(seq, OpFrames.Read<StreamCreateOp>(frame)),
            FrameType.StreamDestroy => s.StreamDestroy(seq, OpFrames.Read<StreamDestroyOp>(frame)),
            FrameType.StreamSynchronize => s.StreamSynchronize(seq, OpFrames.Read<StreamSynchronizeOp>(frame), state.Cancel),
            FrameType.StreamWaitEvent => s.StreamWaitEvent(seq, OpFrames.Read<StreamWaitEventOp>(frame)),
            FrameType.EventCreate => s.EventCreate(seq),
            FrameType.EventDestroy => s.EventDestroy(seq, OpFrames.Read<EventDestroyOp>(frame)),
            FrameType.EventRecord => s.EventRecord(seq, OpFrames.Read<EventRecordOp>(frame)),
            FrameType.EventSynchronize => s.EventSynchronize(seq, OpFrames.Read<EventSynchronizeOp>(frame), state.Cancel),
            FrameType.EventQuery => s.EventQuery(seq, OpFrames.Read<EventQueryOp>(frame)),
            FrameType.EventElapsedTime => s.EventElapsedTime(seq, OpFrames.Read<EventElapsedTimeOp>(frame)),
            FrameType.Synchronize => s.Synchronize(seq, state.Cancel),
            _ => SessionExecutor.Unknown(seq),
        };
    }
}
