using System.Text;
using CsCheck;
using GpuPool.Protocol.Ops;
using GpuPool.Protocol.V1;
using static GpuPool.Protocol.Tests.Ops.OpCase;

namespace GpuPool.Protocol.Tests.Ops;

/// <summary>
/// Every op value, with random fields, is the same op after either transport's codec: the fast path's frame (its
/// fixed fields exactly the size the codec expects of its type) and the gRPC stream's message.
/// </summary>
public sealed class OpValueTests
{
    private static readonly Gen<ulong> U64 = Gen.ULong;
    private static readonly Gen<uint> U32 = Gen.UInt;

    private static readonly Dictionary<string, OpCase> Cases = new OpCase[]
    {
        For(U64.Select(b => new MemAllocOp(b)), NoPayload, r => (MemAllocOp.From(r.MemAlloc), [])),
        For(U64.Select(p => new MemFreeOp(p)), NoPayload, r => (MemFreeOp.From(r.MemFree), [])),
        For(Gen.Select(U64, U64, (p, s) => new MemcpyHtoDOp(p, s)), Bytes(300), r => (MemcpyHtoDOp.From(r.MemcpyHtod), r.MemcpyHtod.Data.ToByteArray())),
        For(Gen.Select(U64, U64, U64, (p, b, s) => new MemcpyDtoHOp(p, b, s)), NoPayload, r => (MemcpyDtoHOp.From(r.MemcpyDtoh), [])),
        For(Gen.Select(U64, U64, U64, U64, (d, s, b, st) => new MemcpyDtoDOp(d, s, b, st)), NoPayload, r => (MemcpyDtoDOp.From(r.MemcpyDtod), [])),
        For(Gen.Select(U64, U64, U64, U32, U32, (p, c, s, v, e) => new MemsetOp(p, c, s, v, e)), NoPayload, r => (MemsetOp.From(r.Memset), [])),
        For(Gen.Select(Gen.Bool, Gen.Bool, (b, s) => new ModuleLoadOp(b, s)), Bytes(300), r => (ModuleLoadOp.From(r.ModuleLoad), r.ModuleLoad.Image.ToByteArray())),
        For(Gen.Select(U64, U64, (o, t) => new ModuleStageOp(o, t)), Bytes(300), r => (ModuleStageOp.From(r.ModuleStage), r.ModuleStage.Data.ToByteArray())),
        For(U64.Select(m => new ModuleUnloadOp(m)), NoPayload, r => (ModuleUnloadOp.From(r.ModuleUnload), [])),
        For(U64.Select(m => new ModuleGetFunctionOp(m)), Name, r => (ModuleGetFunctionOp.From(r.ModuleGetFunction), Encoding.UTF8.GetBytes(r.ModuleGetFunction.Name))),
        For(U64.Select(m => new ModuleGetGlobalOp(m)), Name, r => (ModuleGetGlobalOp.From(r.ModuleGetGlobal), Encoding.UTF8.GetBytes(r.ModuleGetGlobal.Name))),
        For(
            Gen.Select(U64, U64, U32.Array[7], (f, s, d) => new LaunchOp(f, s, d[0], d[1], d[2], d[3], d[4], d[5], d[6])),
            Bytes(300),
            r => (LaunchOp.From(r.Launch), r.Launch.Params.ToByteArray())),
        For(Gen.Const(default(SynchronizeOp)), NoPayload, _ => (default, [])),
        For(Gen.Const(default(MemGetInfoOp)), NoPayload, _ => (default, [])),
        For(Gen.Const(default(UsageOp)), NoPayload, _ => (default, [])),
        For(U32.Select(f => new StreamCreateOp((StreamFlags)f)), NoPayload, r => (StreamCreateOp.From(r.StreamCreate), [])),
        For(U64.Select(s => new StreamDestroyOp(s)), NoPayload, r => (StreamDestroyOp.From(r.StreamDestroy), [])),
        For(U64.Select(s => new StreamSynchronizeOp(s)), NoPayload, r => (StreamSynchronizeOp.From(r.StreamSynchronize), [])),
        For(Gen.Select(U64, U64, (s, e) => new StreamWaitEventOp(s, e)), NoPayload, r => (StreamWaitEventOp.From(r.StreamWaitEvent), [])),
        For(Gen.Const(default(EventCreateOp)), NoPayload, _ => (default, [])),
        For(U64.Select(e => new EventDestroyOp(e)), NoPayload, r => (EventDestroyOp.From(r.EventDestroy), [])),
        For(Gen.Select(U64, U64, (s, e) => new EventRecordOp(s, e)), NoPayload, r => (EventRecordOp.From(r.EventRecord), [])),
        For(U64.Select(e => new EventSynchronizeOp(e)), NoPayload, r => (EventSynchronizeOp.From(r.EventSynchronize), [])),
        For(U64.Select(e => new EventQueryOp(e)), NoPayload, r => (EventQueryOp.From(r.EventQuery), [])),
        For(Gen.Select(U64, U64, (s, e) => new EventElapsedTimeOp(s, e)), NoPayload, r => (EventElapsedTimeOp.From(r.EventElapsedTime), [])),
    }.ToDictionary(c => c.OpType.Name);

    public static TheoryData<string> Ops => [.. Cases.Keys];

    [Fact]
    public void Every_op_value_of_the_protocol_has_its_codec_checked_here()
    {
        var ops = typeof(IOp<>).Assembly.GetTypes()
            .Where(t => t.GetInterfaces().Any(i => i.IsGenericType && i.GetGenericTypeDefinition() == typeof(IOp<>)))
            .Select(t => t.Name);

        Assert.Equal(ops.Order(), Cases.Keys.Order());
    }

    [Theory]
    [MemberData(nameof(Ops))]
    public void An_op_writes_exactly_the_fixed_fields_its_frame_type_takes(string op) => Cases[op].WritesItsFixedSize();

    [Theory]
    [MemberData(nameof(Ops))]
    public void An_op_read_back_from_its_frame_is_the_op_and_payload_written(string op) => Cases[op].RoundTripsThroughItsFrame();

    [Theory]
    [MemberData(nameof(Ops))]
    public void An_op_mapped_to_its_grpc_message_and_back_is_the_same_op_with_the_same_payload(string op) => Cases[op].RoundTripsThroughItsMessage();
}
