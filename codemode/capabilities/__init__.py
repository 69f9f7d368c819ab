"""Built-in capabilities: sandboxed file system, environment and HTTP access, all deny-by-default."""

from codemode.capabilities.base import Capability, HostFn
from codemode.capabilities.env import EnvCapability
from codemode.capabilities.fs import FsCapability
from codemode.capabilities.http import HttpCapability

__all__ = ["Capability", "EnvCapability", "FsCapability", "HostFn", "HttpCapability"]
