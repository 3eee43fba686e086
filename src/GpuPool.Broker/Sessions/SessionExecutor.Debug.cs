using System.Buffers;
using GpuPool.Protocol.Ops;
using Microsoft.Extensions.Logging;

namespace GpuPool.Broker.Sessions;

/// <summary>
/// The session's debug log: each allocation and each launch as the broker received them, so that what an unmodified
/// program sent (a CUDA sample's kernel name, geometry and parameter bytes) can be checked. Nothing is formatted or
/// allocated unless the Debug level is enabled.
/// </summary>
internal sealed partial class SessionExecutor
{
    /// <summary>The names of the function handles this session looked up, for the launch log.</summary>
    private readonly Dictionary<ulong, string> _functionNames = [];

    private ulong GetNamedFunction(ulong module, string name)
    {
        var handle = _context.GetFunction(module, name);
        _functionNames[handle] = name;
        return handle;
    }

    private ulong Allocate(ulong bytes)
    {
        var address = _context.Allocate(bytes);
        if (_logger.IsEnabled(LogLevel.Debug))
        {
            Log.Allocated(_logger, _lease.Claims.LeaseId, bytes, address);
        }

        return address;
    }

    /// <summary>Logs a launch; the caller checks that Debug is enabled.</summary>
    private void LogLaunch(in LaunchOp op, in ReadOnlySequence<byte> parameters)
    {
        var function = _functionNames.GetValueOrDefault(op.Function) ?? $"function handle {op.Function}";
        var hex = parameters.IsSingleSegment ? Convert.ToHexStringLower(parameters.FirstSpan) : Convert.ToHexStringLower(parameters.ToArray());
        Log.KernelLaunch(_logger, _lease.Claims.LeaseId, function, op.Stream, op.GridX, op.GridY, op.GridZ, op.BlockX, op.BlockY, op.BlockZ, op.SharedMemBytes, hex);
    }
}
