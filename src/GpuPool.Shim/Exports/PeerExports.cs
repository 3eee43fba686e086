using System.Runtime.InteropServices;
using GpuPool.Shim.Internal;

namespace GpuPool.Shim.Exports;

/// <summary>
/// Peer access: a lease has one device, and a device is not its own peer, so there is never a peer to reach. The
/// answers are the driver's for a device without peers: cannot access, the same device is CUDA_ERROR_INVALID_DEVICE
/// for P2P attributes, enabling is CUDA_ERROR_PEER_ACCESS_UNSUPPORTED, and disabling what was never enabled is
/// CUDA_ERROR_PEER_ACCESS_NOT_ENABLED.
/// </summary>
internal static unsafe partial class Cuda
{
    [UnmanagedCallersOnly(EntryPoint = "cuDeviceCanAccessPeer")]
    internal static CuResult DeviceCanAccessPeer(int* canAccess, int device, int peer)
    {
        try
        {
            NotNull(canAccess, "canAccessPeer");
            _ = Driver.Instance;
            CheckDevice(device);
            CheckDevice(peer);
            *canAccess = 0;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuDeviceCanAccessPeer", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuDeviceGetP2PAttribute")]
    internal static CuResult DeviceGetP2PAttribute(int* value, int attribute, int source, int destination)
    {
        try
        {
            NotNull(value, "value");
            _ = Driver.Instance;
            *value = 0;

            // PERFORMANCE_RANK, ACCESS_SUPPORTED, NATIVE_ATOMIC_SUPPORTED, CUDA_ARRAY_ACCESS_SUPPORTED.
            if (attribute is < 1 or > 4)
            {
                throw new CudaException(CuResult.InvalidValue, $"{attribute} is not a CUdevice_P2PAttribute");
            }

            CheckDevice(source);
            CheckDevice(destination);
            throw new CudaException(CuResult.InvalidDevice, "P2P attributes are between two different devices, and a lease has one");
        }
        catch (Exception ex)
        {
            return Errors.Report("cuDeviceGetP2PAttribute", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuCtxEnablePeerAccess")]
    internal static CuResult CtxEnablePeerAccess(nint peerContext, uint flags)
    {
        try
        {
            var driver = Driver.Instance;
            _ = Driver.Current();
            if (flags != 0)
            {
                throw new CudaException(CuResult.InvalidValue, $"flags must be 0, not {flags}");
            }

            _ = driver.ResolveContext(peerContext);
            throw new CudaException(CuResult.PeerAccessUnsupported, "peer access: a lease has one device, which is not its own peer");
        }
        catch (Exception ex)
        {
            return Errors.Report("cuCtxEnablePeerAccess", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuCtxDisablePeerAccess")]
    internal static CuResult CtxDisablePeerAccess(nint peerContext)
    {
        try
        {
            var driver = Driver.Instance;
            _ = Driver.Current();
            _ = driver.ResolveContext(peerContext);
            throw new CudaException(CuResult.PeerAccessNotEnabled, "peer access was never enabled (it cannot be)");
        }
        catch (Exception ex)
        {
            return Errors.Report("cuCtxDisablePeerAccess", ex);
        }
    }
}
