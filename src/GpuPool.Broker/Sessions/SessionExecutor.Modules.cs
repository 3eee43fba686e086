using System.Buffers;
using System.Text;
using GpuPool.Devices;
using GpuPool.Protocol.Ops;

namespace GpuPool.Broker.Sessions;

/// <summary>Modules and launches.</summary>
internal sealed partial class SessionExecutor
{
    public ValueTask ModuleLoad(ulong seq, in ModuleLoadOp op, in ReadOnlySequence<byte> image)
    {
        var handle = op.Builtin ? _context.LoadBuiltinModule()
            : image.IsSingleSegment ? _context.LoadModule(image.FirstSpan)
            : _context.LoadModule(image.ToArray());
        return Answer(seq, ReplyKind.Handle, handle);
    }

    public ValueTask ModuleUnload(ulong seq, in ModuleUnloadOp op)
    {
        _context.UnloadModule(op.Module);
        return Done(seq);
    }

    public ValueTask ModuleGetFunction(ulong seq, in ModuleGetFunctionOp op, in ReadOnlySequence<byte> name)
        => Answer(seq, ReplyKind.Handle, _context.GetFunction(op.Module, Encoding.UTF8.GetString(name)));

    /// <summary>Queues a launch; the context takes its own copy of <paramref name="parameters"/> before this returns.</summary>
    public ValueTask Launch(ulong seq, in LaunchOp op, in ReadOnlySequence<byte> parameters)
    {
        var dims = new LaunchDims(op.GridX, op.GridY, op.GridZ, op.BlockX, op.BlockY, op.BlockZ, op.SharedMemBytes);
        _context.EnqueueLaunch(op.Stream, op.Function, dims, parameters.ToArray(), new OpTag(seq, LaunchOp.Name));
        return default;
    }
}
