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

    /// <summary>The module image that ModuleStage ops are putting together, and how much of it has come.</summary>
    private byte[]? _staged;
    private long _stagedBytes;

    public ValueTask ModuleLoad(ulong seq, in ModuleLoadOp op, in ReadOnlySequence<byte> image)
    {
        var handle = op.Builtin ? _context.LoadBuiltinModule()
            : op.Staged ? LoadStaged()
            : image.IsSingleSegment ? _context.LoadModule(image.FirstSpan)
            : _context.LoadModule(image.ToArray());
        return Answer(seq, ReplyKind.Handle, handle);
    }

    /// <summary>Loads the image the stage ops put together, and forgets it whether or not it loads.</summary>
    private ulong LoadStaged()
    {
        var (image, bytes) = (_staged, _stagedBytes);
        (_staged, _stagedBytes) = (null, 0);
        if (image is null || bytes != image.Length)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, image is null
                ? "no module image was staged for this load"
                : $"the staged module image is incomplete: {bytes} of its {image.Length} bytes came");
        }

        return _context.LoadModule(image);
    }

    /// <summary>
    /// Takes a piece of a module image too large for one message. The image is held in the broker's memory until the
    /// load, so it may be no larger than <see cref="BrokerOptions.MaxModuleBytes"/> nor than the lease's memory.
    /// </summary>
    public ValueTask ModuleStage(ulong seq, in ModuleStageOp op, in ReadOnlySequence<byte> data)
    {
        var limit = Math.Min((ulong)_options.MaxModuleBytes, _context.MemoryLimit);
        if (op.Total == 0 || op.Total > limit)
        {
            (_staged, _stagedBytes) = (null, 0);
            throw new DeviceException(op.Total == 0 ? DeviceErrorCode.InvalidArgument : DeviceErrorCode.OutOfMemory, op.Total == 0
                ? "a staged module image cannot be empty"
                : $"a module image of {op.Total} bytes is larger than the broker takes ({limit} bytes: the smaller of its module limit and the lease's memory)");
        }

        if (op.Offset == 0)
        {
            (_staged, _stagedBytes) = (GC.AllocateUninitializedArray<byte>((int)op.Total), 0);
        }

        if (_staged is null || (ulong)_staged.Length != op.Total || op.Offset != (ulong)_stagedBytes || op.Offset + (ulong)data.Length > op.Total)
        {
            var expected = _staged is null ? "offset 0" : $"offset {_stagedBytes} of {_staged.Length} bytes";
            (_staged, _stagedBytes) = (null, 0);
            throw new DeviceException(DeviceErrorCode.InvalidArgument, $"a module image piece of {data.Length} bytes at offset {op.Offset} of {op.Total} is out of order (expected {expected}); the staged image is dropped");
        }

        data.CopyTo(_staged.AsSpan((int)_stagedBytes));
        _stagedBytes += data.Length;
        return Done(seq);
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
