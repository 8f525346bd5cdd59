import datetime

from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from agent.teleport.proto import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PingRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PingResponse(_message.Message):
    __slots__ = ("ClusterName", "ServerVersion", "ProxyPublicAddr", "signature_algorithm_suite")
    CLUSTERNAME_FIELD_NUMBER: _ClassVar[int]
    SERVERVERSION_FIELD_NUMBER: _ClassVar[int]
    PROXYPUBLICADDR_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_ALGORITHM_SUITE_FIELD_NUMBER: _ClassVar[int]
    ClusterName: str
    ServerVersion: str
    ProxyPublicAddr: str
    signature_algorithm_suite: _types_pb2.SignatureAlgorithmSuite
    def __init__(self, ClusterName: _Optional[str] = ..., ServerVersion: _Optional[str] = ..., ProxyPublicAddr: _Optional[str] = ..., signature_algorithm_suite: _Optional[_Union[_types_pb2.SignatureAlgorithmSuite, str]] = ...) -> None: ...

class UserCertsRequest(_message.Message):
    __slots__ = ("Username", "Expires", "RouteToCluster", "KubernetesCluster", "Usage", "RoleRequests", "UseRoleRequests", "SSHPublicKey", "TLSPublicKey")
    class CertUsage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        All: _ClassVar[UserCertsRequest.CertUsage]
    All: UserCertsRequest.CertUsage
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    ROUTETOCLUSTER_FIELD_NUMBER: _ClassVar[int]
    KUBERNETESCLUSTER_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    ROLEREQUESTS_FIELD_NUMBER: _ClassVar[int]
    USEROLEREQUESTS_FIELD_NUMBER: _ClassVar[int]
    SSHPUBLICKEY_FIELD_NUMBER: _ClassVar[int]
    TLSPUBLICKEY_FIELD_NUMBER: _ClassVar[int]
    Username: str
    Expires: _timestamp_pb2.Timestamp
    RouteToCluster: str
    KubernetesCluster: str
    Usage: UserCertsRequest.CertUsage
    RoleRequests: _containers.RepeatedScalarFieldContainer[str]
    UseRoleRequests: bool
    SSHPublicKey: bytes
    TLSPublicKey: bytes
    def __init__(self, Username: _Optional[str] = ..., Expires: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., RouteToCluster: _Optional[str] = ..., KubernetesCluster: _Optional[str] = ..., Usage: _Optional[_Union[UserCertsRequest.CertUsage, str]] = ..., RoleRequests: _Optional[_Iterable[str]] = ..., UseRoleRequests: _Optional[bool] = ..., SSHPublicKey: _Optional[bytes] = ..., TLSPublicKey: _Optional[bytes] = ...) -> None: ...

class Certs(_message.Message):
    __slots__ = ("SSH", "TLS", "TLSCACerts", "SSHCACerts")
    SSH_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    TLSCACERTS_FIELD_NUMBER: _ClassVar[int]
    SSHCACERTS_FIELD_NUMBER: _ClassVar[int]
    SSH: bytes
    TLS: bytes
    TLSCACerts: _containers.RepeatedScalarFieldContainer[bytes]
    SSHCACerts: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, SSH: _Optional[bytes] = ..., TLS: _Optional[bytes] = ..., TLSCACerts: _Optional[_Iterable[bytes]] = ..., SSHCACerts: _Optional[_Iterable[bytes]] = ...) -> None: ...

class GetRoleRequest(_message.Message):
    __slots__ = ("Name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    Name: str
    def __init__(self, Name: _Optional[str] = ...) -> None: ...

class GetClusterCACertResponse(_message.Message):
    __slots__ = ("TLSCA",)
    TLSCA_FIELD_NUMBER: _ClassVar[int]
    TLSCA: bytes
    def __init__(self, TLSCA: _Optional[bytes] = ...) -> None: ...

class ListResourcesRequest(_message.Message):
    __slots__ = ("ResourceType", "Namespace", "Limit", "StartKey", "Labels", "PredicateExpression")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RESOURCETYPE_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    STARTKEY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PREDICATEEXPRESSION_FIELD_NUMBER: _ClassVar[int]
    ResourceType: str
    Namespace: str
    Limit: int
    StartKey: str
    Labels: _containers.ScalarMap[str, str]
    PredicateExpression: str
    def __init__(self, ResourceType: _Optional[str] = ..., Namespace: _Optional[str] = ..., Limit: _Optional[int] = ..., StartKey: _Optional[str] = ..., Labels: _Optional[_Mapping[str, str]] = ..., PredicateExpression: _Optional[str] = ...) -> None: ...

class ListResourcesResponse(_message.Message):
    __slots__ = ("Resources", "NextKey", "TotalCount")
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    NEXTKEY_FIELD_NUMBER: _ClassVar[int]
    TOTALCOUNT_FIELD_NUMBER: _ClassVar[int]
    Resources: _containers.RepeatedCompositeFieldContainer[PaginatedResource]
    NextKey: str
    TotalCount: int
    def __init__(self, Resources: _Optional[_Iterable[_Union[PaginatedResource, _Mapping]]] = ..., NextKey: _Optional[str] = ..., TotalCount: _Optional[int] = ...) -> None: ...

class PaginatedResource(_message.Message):
    __slots__ = ("KubeCluster", "KubernetesServer")
    KUBECLUSTER_FIELD_NUMBER: _ClassVar[int]
    KUBERNETESSERVER_FIELD_NUMBER: _ClassVar[int]
    KubeCluster: _types_pb2.KubernetesClusterV3
    KubernetesServer: _types_pb2.KubernetesServerV3
    def __init__(self, KubeCluster: _Optional[_Union[_types_pb2.KubernetesClusterV3, _Mapping]] = ..., KubernetesServer: _Optional[_Union[_types_pb2.KubernetesServerV3, _Mapping]] = ...) -> None: ...
