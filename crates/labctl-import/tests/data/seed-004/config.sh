#!/usr/bin/env bash

# vim configuration 
# vi를 호출하면 vim을 호출하도록 profile에 입력
echo 'alias vi=vim' >> /etc/profilec 

# swapoff -a to disable swapping
# 쿠버네티스의 설치 요구 조건을 맞추기 위해 스왑되지 않도록 설정
swapoff -a
# sed to comment the swap partition in /etc/fstab
# 시스템이 다시 시작되더라도 스왑되지 않도록 설정
sed -i.bak -r 's/(.+ swap .+)/#\1/' /etc/fstab

# kubernetes repo
# 쿠버네티스의 리포지터리를 설정하기 위한 경로가 너무 길어지지않게 경로를 변수로 처리
gg_pkg="packages.cloud.google.com/yum/doc" # Due to shorten addr for key
# 쿠버네티스를 내려받을 리포지터리를 설정하는 구문
cat <<EOF > /etc/yum.repos.d/kubernetes.repo
[kubernetes]
name=Kubernetes
baseurl=https://packages.cloud.google.com/yum/repos/kubernetes-el7-x86_64
enabled=1
gpgcheck=0
repo_gpgcheck=0
gpgkey=https://${gg_pkg}/yum-key.gpg https://${gg_pkg}/rpm-package-key.gpg
EOF

# Set SELinux in permissive mode (effectively disabling it)
# selinux가 제한적으로 사용되지 않도록 permissive 모드로 변경.
setenforce 0
sed -i 's/^SELINUX=enforcing$/SELINUX=permissive/' /etc/selinux/config

# RHEL/CentOS 7 have reported traffic issues being routed incorrectly due to iptables bypassed
ipv4와 IPv6의 패킷을 iptables가 관리하도록 설정. 파드의 통신을 iptables로 제어
cat <<EOF >  /etc/sysctl.d/k8s.conf
net.bridge.bridge-nf-call-ip6tables = 1
net.bridge.bridge-nf-call-iptables = 1
EOF
# br_netfilter 커널 모듈을 사용해 브리지로 네트워크를 구성
# br_netfilter를 적용함으로써 위에서 적용한 iptables가 활성화 됨
modprobe br_netfilter

# local small dns & vagrant cannot parse and delivery shell code.
# 쿠버네티스 안에서 노드 간 통신을 이름으로 할 수 있도록 각 노드의 호스트 이름과 ip를 /etc/hosts에 설정
# 워커노드는 N변수로 전달된 노드 수와 맞게 동적으로 생성.
echo "192.168.1.10 m-k8s" >> /etc/hosts
for (( i=1; i<=$1; i++  )); do echo "192.168.1.10$i w$i-k8s" >> /etc/hosts; done

# config DNS  
# 외부와 통신할 수 있게 DNS 서버를 지정
cat <<EOF > /etc/resolv.conf
nameserver 1.1.1.1 #cloudflare DNS
nameserver 8.8.8.8 #Google DNS
EOF

