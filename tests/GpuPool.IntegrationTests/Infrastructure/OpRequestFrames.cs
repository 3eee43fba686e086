using System.Buffers;
using System.Text;
using GpuPool.Protocol.Ops;
using GpuPool.Protocol.Transport;
using GpuPool.Protocol.V1;

namespace GpuPool.IntegrationTests.Infrastructure;

/// <summary>
/// Writes an op given as its session.proto message as the fast path's frame, through the same op values the SDK writes,
/// so that tests can state raw frames (valid or not) in the vocabulary of the protocol.
/// </summary>
internal static class OpRequestFrames
{
    public static void Write(IBufferWriter<byte> writer, OpRequest r)
    {
        var seq = r.Seq;
        switch (r.OpCase)
        {
            case OpRequest.OpOneofCase.Open:
                OpFrames.WriteHello(writer, seq, r.Open.LeaseId, r.Open.Token);
                break;
            case OpRequest.OpOneofCase.MemAlloc:
                OpFrames.Write(writer, seq, MemAllocOp.From(r.MemAlloc));
                break;
            case OpRequest.OpOneofCase.MemFree:
                OpFrames.Write(writer, seq, MemFreeOp.From(r.MemFree));
                break;
            case OpRequest.OpOneofCase.MemcpyHtod:
                OpFrames.Write(writer, seq, MemcpyHtoDOp.From(r.MemcpyHtod), r.MemcpyHtod.Data.Span);
                break;
            case OpRequest.OpOneofCase.MemcpyDtoh:
                OpFrames.Write(writer, seq, MemcpyDtoHOp.From(r.MemcpyDtoh));
                break;
            case OpRequest.OpOneofCase.MemcpyDtod:
                OpFrames.Write(writer, seq, MemcpyDtoDOp.From(r.MemcpyDtod));
                break;
            case OpRequest.OpOneofCase.Memset:
                OpFrames.Write(writer, seq, MemsetOp.From(r.Memset));
                break;
            case OpRequest.OpOneofCase.MemGetInfo:
                OpFrames.Write(writer, seq, default(MemGetInfoOp));
                break;
            case OpRequest.OpOneofCase.Usage:
                OpFrames.Write(writer, seq, default(UsageOp));
                break;
            case OpRequest.OpOneofCase.ModuleLoad:
                OpFrames.Write(writer, seq, ModuleLoadOp.From(r.ModuleLoad), r.ModuleLoad.Image.Span);
                break;
            case OpRequest.OpOneofCase.ModuleStage:
                OpFrames.Write(writer, seq, ModuleStageOp.From(r.ModuleStage), r.ModuleStage.Data.Span);
                break;
            case OpRequest.OpOneofCase.ModuleUnload:
                OpFrames.Write(writer, seq, ModuleUnloadOp.From(r.ModuleUnload));
                break;
            case OpRequest.OpOneofCase.ModuleGetFunction:
                OpFrames.Write(writer, seq, ModuleGetFunctionOp.From(r.ModuleGetFunction), Encoding.UTF8.GetBytes(r.ModuleGetFunction.Name));
                break;
            case OpRequest.OpOneofCase.ModuleGetGlobal:
                OpFrames.Write(writer, seq, ModuleGetGlobalOp.From(r.ModuleGetGlobal), Encoding.UTF8.GetBytes(r.ModuleGetGlobal.Name));
                break;
            case OpRequest.OpOneofCase.Launch:
                OpFrames.Write(writer, seq, LaunchOp.From(r.Launch), r.Launch.Params.Span);
                break;
            case OpRequest.OpOneofCase.StreamCreate:
                OpFrames.Write(writer, seq, StreamCreateOp.From(r.StreamCreate));
                break;
            case OpRequest.OpOneofCase.StreamDestroy:
                OpFrames.Write(writer, seq, StreamDestroyOp.From(r.StreamDestroy));
                break;
            case OpRequest.OpOneofCase.StreamSynchronize:
                OpFrames.Write(writer, seq, StreamSynchronizeOp.From(r.StreamSynchronize));
                break;
            case OpRequest.OpOneofCase.StreamWaitEvent:
                OpFrames.Write(writer, seq, StreamWaitEventOp.From(r.StreamWaitEvent));
                break;
            case OpRequest.OpOneofCase.EventCreate:
                OpFrames.Write(writer, seq, default(EventCreateOp));
                break;
            case OpRequest.OpOneofCase.EventDestroy:
                OpFrames.Write(writer, seq, EventDestroyOp.From(r.EventDestroy));
                break;
            case OpRequest.OpOneofCase.EventRecord:
                OpFrames.Write(writer, seq, EventRecordOp.From(r.EventRecord));
                break;
            case OpRequest.OpOneofCase.EventSynchronize:
                OpFrames.Write(writer, seq, EventSynchronizeOp.From(r.EventSynchronize));
                break;
            case OpRequest.OpOneofCase.EventQuery:
                OpFrames.Write(writer, seq, EventQueryOp.From(r.EventQuery));
                break;
            case OpRequest.OpOneofCase.EventElapsedTime:
                OpFrames.Write(writer, seq, EventElapsedTimeOp.From(r.EventElapsedTime));
                break;
            case OpRequest.OpOneofCase.Synchronize:
                OpFrames.Write(writer, seq, default(SynchronizeOp));
                break;
            default:
                throw new ArgumentException($"op {r.OpCase} has no fast-path frame", nameof(r));
        }
    }
}
