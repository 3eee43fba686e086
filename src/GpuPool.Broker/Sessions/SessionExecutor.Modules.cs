using System.Buffers;
using System.Text;
using GpuPool.Devices;
using GpuPool.Protocol.Ops;
using Microsoft.Extensions.Logging;

namespace GpuPool.Broker.Sessions;

/// <summary>Modules and launches.</summary>
internal sealed partial class SessionExecutor
{
    /// <summary>Where a payload that a receive buffer split in two is put together (a launch's parameters, at most 4 KiB).</summary>
    private byte[] _scratch = [];

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
        => Answer(seq, ReplyKind.Handle, GetNamedFunction(op.Module, Encoding.UTF8.GetString(name)));

    /// <summary>A module variable's device address and size, which the context allocated when it loaded the module.</summary>
    public ValueTask ModuleGetGlobal(ulong seq, in ModuleGetGlobalOp op, in ReadOnlySequence<byte> name)
    {
        var (address, size) = _context.GetGlobal(op.Module, Encoding.UTF8.GetString(name));
        return Answer(seq, ReplyKind.Global, address, size);
    }

    /// <summary>
    /// Queues a launch. The context takes its own copy of <paramref name="parameters"/> before it returns, so they are
    /// handed over where they lie (the connection's receive buffer), or, when the buffer split them, from the session's
    /// scratch block.
    /// </summary>
    public ValueTask Launch(ulong seq, in LaunchOp op, in ReadOnlySequence<byte> parameters)
    {
        if (_logger.IsEnabled(LogLevel.Debug))
        {
            LogLaunch(op, parameters);
        }

        var dims = new LaunchDims(op.GridX, op.GridY, op.GridZ, op.BlockX, op.BlockY, op.BlockZ, op.SharedMemBytes);
        _context.EnqueueLaunch(op.Stream, op.Function, dims, Contiguous(parameters), new OpTag(seq, LaunchOp.Name));
        return default;
    }

    /// <summary>A payload as one block of memory: itself when it is one segment, else copied into the session's scratch block.</summary>
    private ReadOnlyMemory<byte> Contiguous(in ReadOnlySequence<byte> payload)
    {
        if (payload.IsSingleSegment)
        {
            return payload.First;
        }

        if (_scratch.Length < payload.Length)
        {
            _scratch = new byte[payload.Length];
        }

        payload.CopyTo(_scratch);
        return _scratch.AsMemory(0, (int)payload.Length);
    }
}
