using System.Text;
using Google.Protobuf;
using GpuPool.Protocol.Transport;
using GpuPool.Protocol.V1;

namespace GpuPool.Protocol.Ops;

/// <summary>
/// Loads the payload (PTX text, a cubin or a fat binary), or the backend's built-in kernel library, or (<paramref name="Staged"/>)
/// the image that <see cref="ModuleStageOp"/>s put together; answered with the module's handle.
/// </summary>
public readonly record struct ModuleLoadOp(bool Builtin, bool Staged = false) : IOp<ModuleLoadOp>
{
    public static FrameType Type => FrameType.ModuleLoad;

    public static ModuleLoadOp Read(ref FixedFields fields)
    {
        var builtin = fields.U32() != 0;
        var staged = fields.U32() != 0;
        return new(builtin, staged);
    }

    public static ModuleLoadOp From(ModuleLoad message) => new(message.Builtin, message.Staged);

    public void Write(ref FixedBuilder fields) => fields = fields.U32(Builtin ? 1u : 0u).U32(Staged ? 1u : 0u);

    public void ToProto(OpRequest request, ReadOnlySpan<byte> payload)
        => request.ModuleLoad = new ModuleLoad { Builtin = Builtin, Staged = Staged, Image = ByteString.CopyFrom(payload) };
}

/// <summary>
/// A piece of a module image too large for one message: the payload goes at <paramref name="Offset"/> of an image of
/// <paramref name="Total"/> bytes. Pieces come in order, offset 0 starting a new image; answered Done.
/// </summary>
public readonly record struct ModuleStageOp(ulong Offset, ulong Total) : IOp<ModuleStageOp>
{
    public static FrameType Type => FrameType.ModuleStage;

    public static ModuleStageOp Read(ref FixedFields fields) => new(fields.U64(), fields.U64());

    public static ModuleStageOp From(ModuleStage message) => new(message.Offset, message.Total);

    public void Write(ref FixedBuilder fields) => fields = fields.U64(Offset).U64(Total);

    public void ToProto(OpRequest request, ReadOnlySpan<byte> payload)
        => request.ModuleStage = new ModuleStage { Offset = Offset, Total = Total, Data = ByteString.CopyFrom(payload) };
}

/// <summary>Unloads a module and forgets its functions; answered Done.</summary>
public readonly record struct ModuleUnloadOp(ulong Module) : IOp<ModuleUnloadOp>
{
    public static FrameType Type => FrameType.ModuleUnload;

    public static ModuleUnloadOp Read(ref FixedFields fields) => new(fields.U64());

    public static ModuleUnloadOp From(ModuleUnload message) => new(message.Module);

    public void Write(ref FixedBuilder fields) => fields = fields.U64(Module);

    public void ToProto(OpRequest request, ReadOnlySpan<byte> payload) => request.ModuleUnload = new ModuleUnload { Module = Module };
}

/// <summary>Looks up the kernel the payload names (UTF-8) in a module; answered with the function's handle.</summary>
public readonly record struct ModuleGetFunctionOp(ulong Module) : IOp<ModuleGetFunctionOp>
{
    public static FrameType Type => FrameType.ModuleGetFunction;

    public static ModuleGetFunctionOp Read(ref FixedFields fields) => new(fields.U64());

    public static ModuleGetFunctionOp From(ModuleGetFunction message) => new(message.Module);

    public void Write(ref FixedBuilder fields) => fields = fields.U64(Module);

    public void ToProto(OpRequest request, ReadOnlySpan<byte> payload)
        => request.ModuleGetFunction = new ModuleGetFunction { Module = Module, Name = Encoding.UTF8.GetString(payload) };
}

/// <summary>
/// Looks up the module-scope variable the payload names (UTF-8) in a module; answered with its device address and size
/// (<see cref="ReplyKind.Global"/>).
/// </summary>
public readonly record struct ModuleGetGlobalOp(ulong Module) : IOp<ModuleGetGlobalOp>
{
    public static FrameType Type => FrameType.ModuleGetGlobal;

    public static ModuleGetGlobalOp Read(ref FixedFields fields) => new(fields.U64());

    public static ModuleGetGlobalOp From(ModuleGetGlobal message) => new(message.Module);

    public void Write(ref FixedBuilder fields) => fields = fields.U64(Module);

    public void ToProto(OpRequest request, ReadOnlySpan<byte> payload)
        => request.ModuleGetGlobal = new ModuleGetGlobal { Module = Module, Name = Encoding.UTF8.GetString(payload) };
}

/// <summary>
/// Runs a kernel in the stream's order. Fire-and-forget. The payload is the parameter block, packed as cuLaunchKernel
/// lays it out: each parameter at an offset aligned to its size, pointers as 8-byte device addresses.
/// </summary>
public readonly record struct LaunchOp(ulong Function, ulong Stream, uint GridX, uint GridY, uint GridZ, uint BlockX, uint BlockY, uint BlockZ, uint SharedMemBytes)
    : IOp<LaunchOp>
{
    public const string Name = "launch";

    public static FrameType Type => FrameType.Launch;

    public static LaunchOp Read(ref FixedFields fields)
    {
        var op = new LaunchOp(fields.U64(), fields.U64(), fields.U32(), fields.U32(), fields.U32(), fields.U32(), fields.U32(), fields.U32(), fields.U32());
        fields.U32();
        return op;
    }

    public static LaunchOp From(Launch message)
        => new(message.Function, message.Stream, message.GridX, message.GridY, message.GridZ, message.BlockX, message.BlockY, message.BlockZ, message.SharedMemBytes);

    public void Write(ref FixedBuilder fields)
        => fields = fields.U64(Function).U64(Stream).U32(GridX).U32(GridY).U32(GridZ).U32(BlockX).U32(BlockY).U32(BlockZ).U32(SharedMemBytes).U32(0);

    public void ToProto(OpRequest request, ReadOnlySpan<byte> payload) => request.Launch = new Launch
    {
        Function = Function,
        Stream = Stream,
        GridX = GridX,
        GridY = GridY,
        GridZ = GridZ,
        BlockX = BlockX,
        BlockY = BlockY,
        BlockZ = BlockZ,
        SharedMemBytes = SharedMemBytes,
        Params = ByteString.CopyFrom(payload),
    };
}
