using System.Buffers;
using GpuPool.Broker.Sessions;
using GpuPool.Protocol.Ops;
using GpuPool.Protocol.V1;

namespace GpuPool.Broker.Transport.Grpc;

/// <summary>
/// Maps an op of the gRPC stream (session.proto's <see cref="OpRequest"/>) to its <see cref="SessionExecutor"/>
/// method, the same one the fast path's frame runs: protobuf is the portable wire, not the session's model.
/// </summary>
internal static class GrpcOps
{
    /// <summary>
    /// Numbers and runs the op. <paramref name="payloadOwner"/> owns a copy's staged bytes and is disposed once the
    /// device no longer needs them (at once for any other op).
    /// </summary>
    public static ValueTask Run(SessionExecutor session, OpRequest request, IDisposable? payloadOwner, CancellationToken cancellationToken)
    {
        if (request.OpCase != OpRequest.OpOneofCase.MemcpyHtod)
        {
            payloadOwner?.Dispose();
            return session.Run(request.Seq, (request, cancellationToken), Dispatch);
        }

        if (!session.TryTakeSeq(request.Seq))
        {
            payloadOwner?.Dispose();
            return default;
        }

        var copy = request.MemcpyHtod;
        session.EnqueueCopyToDevice(request.Seq, copy.Stream, copy.Ptr, copy.Data.Memory, payloadOwner);
        return default;
    }

    private static ValueTask Dispatch(SessionExecutor s, (OpRequest Request, CancellationToken Cancel) state)
    {
        var r = state.Request;
        var seq = r.Seq;
        return r.OpCase switch
        {
            OpRequest.OpOneofCase.MemAlloc => s.MemAlloc(seq, MemAllocOp.From(r.MemAlloc)),
            OpRequest.OpOneofCase.MemFree => s.MemFree(seq, MemFreeOp.From(r.MemFree)),
            OpRequest.OpOneofCase.MemcpyDtoh => s.MemcpyDtoH(seq, MemcpyDtoHOp.From(r.MemcpyDtoh)),
            OpRequest.OpOneofCase.MemcpyDtod => s.MemcpyDtoD(seq, MemcpyDtoDOp.From(r.MemcpyDtod)),
            OpRequest.OpOneofCase.Memset => s.Memset(seq, MemsetOp.From(r.Memset)),
            OpRequest.OpOneofCase.MemGetInfo => s.MemGetInfo(seq),
            OpRequest.OpOneofCase.Usage => s.Usage(seq),
            OpRequest.OpOneofCase.ModuleLoad => s.ModuleLoad(seq, ModuleLoadOp.From(r.ModuleLoad), new ReadOnlySequence<byte>(r.ModuleLoad.Image.Memory)),
            OpRequest.OpOneofCase.ModuleUnload => s.ModuleUnload(seq, ModuleUnloadOp.From(r.ModuleUnload)),
            OpRequest.OpOneofCase.ModuleGetFunction => s.ModuleGetFunction(seq, ModuleGetFunctionOp.From(r.ModuleGetFunction), Utf8(r.ModuleGetFunction.Name)),
            OpRequest.OpOneofCase.ModuleGetGlobal => s.ModuleGetGlobal(seq, ModuleGetGlobalOp.From(r.ModuleGetGlobal), Utf8(r.ModuleGetGlobal.Name)),
            OpRequest.OpOneofCase.ModuleStage => s.ModuleStage(seq, ModuleStageOp.From(r.ModuleStage), new ReadOnlySequence<byte>(r.ModuleStage.Data.Memory)),
            OpRequest.OpOneofCase.Launch => s.Launch(seq, LaunchOp.From(r.Launch), new ReadOnlySequence<byte>(r.Launch.Params.Memory)),
            OpRequest.OpOneofCase.StreamCreate => s.StreamCreate(seq, StreamCreateOp.From(r.StreamCreate)),
            OpRequest.OpOneofCase.StreamDestroy => s.StreamDestroy(seq, StreamDestroyOp.From(r.StreamDestroy)),
            OpRequest.OpOneofCase.StreamSynchronize => s.StreamSynchronize(seq, StreamSynchronizeOp.From(r.StreamSynchronize), state.Cancel),
            OpRequest.OpOneofCase.StreamWaitEvent => s.StreamWaitEvent(seq, StreamWaitEventOp.From(r.StreamWaitEvent)),
            OpRequest.OpOneofCase.EventCreate => s.EventCreate(seq),
            OpRequest.OpOneofCase.EventDestroy => s.EventDestroy(seq, EventDestroyOp.From(r.EventDestroy)),
            OpRequest.OpOneofCase.EventRecord => s.EventRecord(seq, EventRecordOp.From(r.EventRecord)),
            OpRequest.OpOneofCase.EventSynchronize => s.EventSynchronize(seq, EventSynchronizeOp.From(r.EventSynchronize), state.Cancel),
            OpRequest.OpOneofCase.EventQuery => s.EventQuery(seq, EventQueryOp.From(r.EventQuery)),
            OpRequest.OpOneofCase.EventElapsedTime => s.EventElapsedTime(seq, EventElapsedTimeOp.From(r.EventElapsedTime)),
            OpRequest.OpOneofCase.Synchronize => s.Synchronize(seq, state.Cancel),
            OpRequest.OpOneofCase.Open => SessionExecutor.AlreadyOpen(),
            _ => SessionExecutor.Unknown(seq),
        };
    }

    private static ReadOnlySequence<byte> Utf8(string text) => new(System.Text.Encoding.UTF8.GetBytes(text));
}
